"""`graftlm` subcommands that serve both training runs and demo run folders (`graftlm eval`, `graftlm plot`)."""
