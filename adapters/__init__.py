"""Built-in backbone adapters, registered through the `graftlm` entry-point group."""
