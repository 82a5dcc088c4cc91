"""``graftlm adapters``: list the registered backbone adapters and where they come from."""

from __future__ import annotations

import argparse
import json

from graftlm.plugins import list_adapters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    entries = list_adapters()
    rows = [
        {
            "name": e.adapter.name or type(e.adapter).__name__,
            "model_types": list(e.adapter.model_types),
            "fallback": bool(e.adapter.fallback),
            "plugin": e.plugin,
            "source": e.source,
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no adapters registered (see docs/adapters.md)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        types = ", ".join(r["model_types"]) or ("any (tried after the others)" if r["fallback"] else "-")
        print(f"{r['name']:<{width}}  model_type {types}  from {r['source']}")
    return 0
