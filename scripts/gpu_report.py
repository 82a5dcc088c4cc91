"""The record of one `scripts/gpu-check.sh` run: ``summary.md`` + ``summary.json``, the training
loss PNG and one log, beside the bench's ``results.{md,json}`` and charts.

``python scripts/gpu_report.py --work WORK --out OUT`` reads what the script's steps left in
``WORK`` (``run.json``, ``steps.jsonl``, ``env.json``, ``notes.txt``, ``*.log``, the training run
in ``WORK/train``) and the bench's ``OUT/results.json``, writes the record into ``OUT`` (flat, at
most 8 files, so one copy of the folder is the whole record) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from graftlm.bench import report
from graftlm.training.metrics import read_metrics
from graftlm.training.plots import plot_run

RECORD_FILES = ("summary.md", "summary.json", "results.md", "results.json", "throughput.png", "kv_memory.png",
                "train-loss.png", "log.txt")
STEP_ORDER = ("setup", "tests", "bench", "train", "eval", "report")
LOG_LIMIT = 4 * 2**20  # bytes of log.txt (the copy-back limit is 16 MiB a file)
GPU_BUDGET_S = 480


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_steps(work: Path) -> list[dict[str, Any]]:
    """Step records in script order (the last record of a step wins)."""
    steps: dict[str, dict[str, Any]] = {}
    path = work / "steps.jsonl"
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        steps[rec["name"]] = rec
    return [steps[n] for n in STEP_ORDER if n in steps] + [s for n, s in steps.items() if n not in STEP_ORDER]


def pytest_summaries(log: str) -> list[str]:
    """pytest's closing lines ('3 passed, 2 skipped in 1.2s') and its SKIPPED reasons."""
    out = []
    for line in log.splitlines():
        s = line.strip().strip("=").strip()
        if re.search(r"\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b", s) and " in " in s:
            out.append(s)
        elif s.startswith(("SKIPPED", "FAILED", "ERROR")):
            out.append(s)
    return out


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Steps, wall time, last train loss and tokens/s of the run's metrics.jsonl (empty if none)."""
    try:
        records = read_metrics(run_dir)
    except ValueError:
        return {}
    train = [r for r in records if r.get("kind") == "train"]
    if not train:
        return {}
    last = train[-1]
    out = {"steps": last.get("step"), "last_loss": last.get("loss"), "tokens_seen": last.get("tokens_seen"),
           "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in train if "tokens_per_s" in r)
           if any("tokens_per_s" in r for r in train) else None}
    return {k: v for k, v in out.items() if v is not None}


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]


def speedup_table(bench: dict[str, Any]) -> list[str]:
    """One line per (backbone, batch): lean loop and HF tokens/s, each SLLM's tokens/s and × lean."""
    rows = bench.get("throughput") or []
    keys = list(dict.fromkeys((r["backbone"], r["batch"]) for r in rows))
    sllms = sorted({r["method"] for r in rows if r["method"].startswith("sllm")})
    body = []
    for bb, b in keys:
        sel = {r["method"]: r for r in rows if (r["backbone"], r["batch"]) == (bb, b)}
        line: list[Any] = [bb, b, next(iter(sel.values())).get("new_tokens"),
                           sel.get("lean_loop", {}).get("tokens_per_s"), sel.get("hf_generate", {}).get("tokens_per_s")]
        for m in sllms:
            r = sel.get(m, {})
            line.append(f"{_fmt(r.get('tokens_per_s'))} (×{_fmt(r.get('speedup'))})" if r else None)
        body.append(line)
    return _table(["backbone", "batch", "tokens", "lean loop tok/s", "HF generate tok/s"]
                  + [f"{m} tok/s (× lean)" for m in sllms], body) if body else []


def kv_summary(bench: dict[str, Any]) -> list[str]:
    rows = [r for r in bench.get("kv") or [] if r.get("bytes_per_token") is not None]
    body = [[r["backbone"], r["side"], r.get("segmenter"), r["tokens"], r["bytes_per_token"] / 1024,
             f"{100 * r['ratio']:.1f}%" if r.get("ratio") is not None else None] for r in rows]
    return _table(["backbone", "side", "segmenter", "context tokens", "KV KB/token", "vs backbone"], body) if body else []


def memory_summary(bench: dict[str, Any]) -> list[str]:
    rows = bench.get("memory") or []
    body = [[r["backbone"], r["batch"], r["method"], r.get("measure"), r["peak_bytes"] / 2**20,
             r["working_bytes"] / 2**20] for r in rows if r.get("peak_bytes") is not None]
    return _table(["backbone", "batch", "method", "measure", "peak MiB", "above start MiB"], body) if body else []


def attention_summary(bench: dict[str, Any]) -> list[str]:
    rows = bench.get("attention") or []
    body = [[r["backbone"], r["batch"], r["backend"], r.get("tokens_per_s"), r.get("vs_sdpa"),
             r.get("max_abs_diff"), r.get("argmax_agree"), r.get("auto_picks"), r.get("note", "")] for r in rows]
    return _table(["backbone", "batch", "backend", "tok/s", "× SDPA", "decoder max abs diff", "argmax agree",
                   "auto picks", "note"], body) if body else []


def collect(work: Path, out: Path) -> dict[str, Any]:
    run = _json(work / "run.json") or {}
    env = _json(work / "env.json") or {}
    steps = read_steps(work)
    tests_log = (work / "tests.log").read_text(errors="replace") if (work / "tests.log").is_file() else ""
    run_dir = work / "train"
    notes = [n for n in (work / "notes.txt").read_text().splitlines() if n.strip()] \
        if (work / "notes.txt").is_file() else []
    bench = _json(out / "results.json") or {}
    return {
        "mode": run.get("mode", "unknown"), "recipe": run.get("recipe"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.get("started", time.time()))),
        "machine_line": env.get("machine_line"), "environment": env, "steps": steps,
        "total_seconds": round(time.time() - run["started"], 1) if "started" in run else None,
        "tests": pytest_summaries(tests_log),
        "bench_notes": bench.get("notes", []), "bench_settings": bench.get("settings"),
        "training": training_summary(run_dir),
        "train_eval": _scalars(_json(work / "train-eval.json")),
        "eval": _scalars(_json(run_dir / "eval.json")) if _step_ok(steps, "eval") else {},
        "notes": notes,
    }


def _step_ok(steps: list[dict[str, Any]], name: str) -> bool:
    return any(s["name"] == name and s["status"] == "ok" for s in steps)


def _scalars(d: Any) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if isinstance(v, (int, float, str)) and k != "examples"}


def markdown(summary: dict[str, Any], bench: dict[str, Any]) -> str:
    mode = summary["mode"]
    lines = ["# graftlm GPU check", ""]
    if mode != "gpu":
        lines += [f"**Mode: {mode}. Nothing here was measured on a GPU; the figures come from tiny CPU "
                  "models and mean nothing: this record only shows that every step runs.**", ""]
    lines += [f"Machine: {summary.get('machine_line') or 'unknown'}", "", f"Date: {summary['date']}; "
              f"recipe: `{summary.get('recipe')}`; command: `bash scripts/gpu-check.sh"
              + (" --dry-run" if mode == "dry-run" else "") + "`", ""]
    total = summary.get("total_seconds")
    lines += ["## Steps", ""] + _table(
        ["step", "status", "seconds", "limit s"],
        [[s["name"], s["status"] + (f" ({s['reason']})" if s.get("reason") else ""), s.get("seconds"),
          s.get("limit")]
         for s in summary["steps"]])
    lines += ["", f"Total: {_fmt(total)} s" + (f" (budget {GPU_BUDGET_S} s)" if mode == "gpu" else ""), ""]
    if summary["tests"]:
        lines += ["## Tests (pytest -m cuda; attention tests)", ""] + [f"- {t}" for t in summary["tests"]] + [""]
    for title, part in (("Throughput (greedy, fixed output length; × = speed-up over the lean loop)", speedup_table),
                        ("KV-cache bytes per context token", kv_summary),
                        ("Peak memory of one generation", memory_summary),
                        ("SentenceVAE attention: SDPA vs xformers", attention_summary)):
        table = part(bench)
        if table:
            lines += [f"## {title}", ""] + table + [""]
    if bench:
        lines += ["Every row, with spreads and settings: [results.md](results.md) (raw: results.json).", ""]
    if summary["training"] or summary["eval"] or summary["train_eval"]:
        lines += [f"## Training `{summary.get('recipe')}` in bf16", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in summary["training"].items()]
        if summary["eval"]:
            lines += ["", "Held-out evaluation (`graftlm eval`, the measure used on CPU):", ""]
            lines += [f"- {k}: {_fmt(v)}" for k, v in summary["eval"].items()]
        elif summary["train_eval"]:
            lines += ["", "Held-out evaluation at the end of `graftlm train` (same measure):", ""]
            lines += [f"- {k}: {_fmt(v)}" for k, v in summary["train_eval"].items()]
        lines += [""]
    notes = summary["notes"] + summary["bench_notes"]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_log(work: Path, out: Path) -> None:
    """Every step's log in one file, each cut to its last part if the whole would be too big."""
    logs = [p for n in STEP_ORDER if (p := work / f"{n}.log").is_file()]
    per = LOG_LIMIT // max(len(logs), 1)
    with open(out / "log.txt", "w") as f:
        for p in logs:
            text = p.read_text(errors="replace")
            if len(text) > per:
                text = f"[... {len(text) - per} characters cut ...]\n" + text[-per:]
            f.write(f"===== {p.name} =====\n{text}\n")


def write_record(work: Path, out: Path) -> dict[str, Any]:
    """Write summary.md/.json, results.md + charts (again, in case the bench was cut short),
    train-loss.png and log.txt into ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    bench = _json(out / "results.json") or {}
    if bench:
        report.write_markdown(bench, out / "results.md")
        report.write_charts(bench, out)
    if (work / "train" / "metrics.jsonl").is_file():
        try:
            plot_run(work / "train", out / "train-loss.png")
        except ValueError:
            pass
    summary = collect(work, out)
    (out / "summary.md").write_text(markdown(summary, bench))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    write_log(work, out)
    extra = sorted(p.name for p in out.iterdir() if p.name not in RECORD_FILES and p.name != "README.md")
    if extra:
        print(f"warning: {out} holds files outside the record: {', '.join(extra)}", file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="the gpu-check scratch folder (steps.jsonl, logs, train/)")
    p.add_argument("--out", required=True, help="the record folder (the bench's results.json is read from here)")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    if not (work / "steps.jsonl").is_file():
        print(f"error: {work / 'steps.jsonl'} does not exist: is {work} a gpu-check scratch folder?", file=sys.stderr)
        return 2
    write_record(work, out)
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
