"""The `graftlm` command line (subcommands are added by each feature)."""
import sys


def main(argv: list[str] | None = None) -> int:
    print("graftlm: no subcommands yet", file=sys.stderr)
    return 2
