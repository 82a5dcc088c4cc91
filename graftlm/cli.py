"""The `graftlm` command line.

Each subcommand lives in its own module, imported only when used; the module defines
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from graftlm import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "adapters": ("graftlm.plugins.cli_adapters", "list the registered backbone adapters and where they come from"),
    "train": ("graftlm.training.cli_train", "train a SentenceVAE or a grafted SentenceLLM from a recipe"),
    "eval": ("graftlm.commands.eval", "evaluate a trained SentenceVAE or SentenceLLM"),
    "plot": ("graftlm.commands.plot", "write PNG loss curves of a run folder"),
    "bench": ("graftlm.bench.cli_bench", "measure throughput and KV-cache memory, backbone vs SentenceLLM"),
    "demo": ("graftlm.demo.cli_demo", "graft, train and run SmolLM2-135M offline, end to end"),
    "generate": ("graftlm.demo.cli_generate", "generate sentences from a prompt with a finished run"),
    "reconstruct": ("graftlm.demo.cli_reconstruct", "encode and decode a sentence with a run's SentenceVAE"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graftlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"graftlm {__version__}",
                        help="print graftlm's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == wanted:  # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()  # when the command started: budgets count from here (args.started)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:])
    args.started = started
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
