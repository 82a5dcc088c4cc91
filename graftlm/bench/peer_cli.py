"""The 'peers' part of `graftlm bench`: argument checks, the measurement, its Markdown tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from graftlm.bench.models import Backbone
from graftlm.bench.peer_suite import best_identical_peer, peer_rows, trained_quality
from graftlm.bench.peers import load_draft
from graftlm.sllm import load as load_sllm


def check_peer_args(args: argparse.Namespace) -> None:
    """Raise ValueError on a bad 'peers' option before anything is measured."""
    if args.peer_tokens < 1:
        raise ValueError(f"--peer-tokens must be >= 1, got {args.peer_tokens}")
    if args.self_draft_layers < 0:
        raise ValueError(f"--self-draft-layers must be >= 0 (0 = no self-draft probe), got {args.self_draft_layers}")
    if any(L < 1 for L in args.peer_sentence_lens or []):
        raise ValueError(f"--peer-sentence-lens must be positive, got {args.peer_sentence_lens}")
    if args.trained is not None:
        run = Path(args.trained)
        if not (run / "state.json").is_file():
            raise ValueError(f"--trained {args.trained}: not a `graftlm demo` run folder (no state.json); "
                             "give the folder `graftlm demo --out` wrote")
        phase = json.loads((run / "state.json").read_text()).get("phases", {}).get("sllm") or {}
        if not phase.get("done") or not (run / "sllm" / "model").is_dir():
            raise ValueError(f"--trained {args.trained}: the run has no trained SentenceLLM yet; finish it with "
                             f"`graftlm demo --resume {args.trained}`")


def _run_backbone(run_dir: str) -> str:
    """The bench name of a demo run's backbone ('smollm2' runs are SmolLM2-135M)."""
    model = json.loads((Path(run_dir) / "state.json").read_text()).get("settings", {}).get("model")
    return "smollm2-135m" if model == "smollm2" else str(model)


def _load_trained(run_dir: str, backbone: Backbone) -> tuple[Any, str]:
    # a demo run keeps its SentenceLLM in sllm/model (graftlm.demo.run_folder; bench may not import demo)
    sllm = load_sllm(Path(run_dir) / "sllm" / "model").eval().to(next(backbone.model.parameters()).dtype)
    q = trained_quality(run_dir)
    note = f"trained ({Path(run_dir).name}): own sentence lengths, stop head on"
    if q.get("sllm_bits_per_byte") is not None:
        note += (f"; bits per byte {q['sllm_bits_per_byte']:.3f} vs backbone {q['backbone_bits_per_byte']:.3f}"
                 " (graftlm.evaluate in that run)")
    return sllm, note


def measure_peers(bb: Backbone, args: argparse.Namespace, sentence_len: int, results: dict[str, Any],
                  log: Callable[[str], None]) -> list[dict[str, Any]]:
    drafts = {Path(p).name or p: load_draft(p) for p in args.draft_model}
    trained, note = (None, "")
    if args.trained is not None and _run_backbone(args.trained) != bb.name:
        results["notes"].append(f"--trained {args.trained} was trained on {_run_backbone(args.trained)}, "
                                f"not {bb.name}: no trained row for {bb.name}")
    elif args.trained is not None:
        trained, note = _load_trained(args.trained, bb)
        results.setdefault("trained", {})[bb.name] = {"run": str(args.trained), **trained_quality(args.trained)}
    lens = tuple(args.peer_sentence_lens) if args.peer_sentence_lens else (sentence_len,)
    return peer_rows(bb, new_tokens=args.peer_tokens, prompt_tokens=args.prompt_tokens, sentence_lens=lens,
                     sources=tuple(args.peer_sources), modes=tuple(args.peer_modes),
                     drafts=drafts, self_draft_layers=args.self_draft_layers or None, trained=trained,
                     trained_note=note, repeats=args.repeats, log=log)


def _yes_no(v: Any) -> str:
    return "reference" if v == "ref" else ("–" if v is None else ("yes" if v else "no"))


def peers_markdown(rows: list[dict[str, Any]]) -> str:
    """One table per mode: methods × sources (tokens/s and × HF generate), output = greedy?, and the
    SLLM rows' ratio to the best output-identical peer of the same source."""
    sources = list(dict.fromkeys(r["source"] for r in rows))
    parts = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mrows = [r for r in rows if r["mode"] == mode]
        best = {s: best_identical_peer(rows, s) for s in sources}
        header = ["method"] + [f"{s}: tok/s (× HF generate: wall, CPU time)" for s in sources] + \
            (["× best identical peer"] if mode == "greedy" else []) + ["output = greedy?", "note"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for method in dict.fromkeys(r["method"] for r in mrows):
            cells, vs_best, equal, note = [], [], None, ""
            for s in sources:
                r = next((x for x in mrows if x["method"] == method and x["source"] == s), None)
                if r is None:
                    cells.append("–")
                    continue
                tok = f" ({r['tokens']} tokens)" if method == "sllm trained" else ""
                cpu = f", CPU {r['cpu_speedup']:.2f}×" if r.get("cpu_speedup") is not None else ""
                cells.append(f"{r['tokens_per_s']:.1f} ({r['speedup']:.2f}×{cpu}){tok}")
                equal = "ref" if method == "hf_generate" else (r["equals_greedy"] if equal in (None, True) else equal)
                note = r.get("note") or note
                b = best.get(s)
                if method.startswith("sllm") and b:
                    vs_best.append(f"{r['tokens_per_s'] / b['tokens_per_s']:.2f}× {b['method']}")
            if mode == "sampled":
                equal_txt = "backbone's distribution" if method.startswith(("prompt_lookup", "assisted")) else \
                    ("reference" if method == "hf_generate" else "another model")
            else:
                equal_txt = _yes_no(equal)
            row = [method] + cells + (["; ".join(vs_best) or "–"] if mode == "greedy" else []) + [equal_txt, note]
            lines.append("| " + " | ".join(row) + " |")
        parts += [f"### batch 1, {mode}", "", "\n".join(lines), ""]
    return "\n".join(parts)
