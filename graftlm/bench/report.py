"""Results of a benchmark run: JSON, a Markdown report and PNG charts (matplotlib, Agg)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from graftlm.atomic import write_text


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (how busy the shared machine was), None where unsupported."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU/GPU, threads and library versions: what the timings depend on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
        cores = psutil.cpu_count(logical=True)
    except ImportError:
        mem_gb, cores = None, None
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu, "logical_cores": cores, "memory_gb": mem_gb,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_before": load_average(),
    }
    return info


def save_json(results: dict[str, Any], path: str | Path) -> None:
    write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (backbone, batch, method): wall-clock and CPU-time throughput, the
    speed-up over the lean loop by each (median of per-round ratios), the MAC bound and the share
    of it reached (by CPU time: robust on a shared machine with 1 thread)."""
    header = ["backbone", "batch", "tokens", "threads", "method", "tokens/s (wall)", "spread", "× lean (wall)",
              "tokens/CPU-s", "× lean (CPU)", "MAC bound", "of bound (CPU)", "of bound (wall)"]
    body = []
    for r in rows:
        body.append([r["backbone"], r["batch"], r.get("new_tokens"), r.get("threads"), r["method"], r["tokens_per_s"],
                     f"{100 * r['spread']:.0f}%", r.get("speedup"), r.get("cpu_tokens_per_s"), r.get("cpu_speedup"),
                     r.get("mac_bound"), r.get("cpu_of_bound"), r.get("of_bound")])
    return _table(header, body)


def merge(paths: list[str | Path]) -> dict[str, Any]:
    """Concatenate the rows of several results.json files (machine/settings of each kept in ``runs``)."""
    out: dict[str, Any] = {"machine": {}, "runs": [], "notes": []}
    for p in paths:
        data = json.loads(Path(p).read_text())
        out["machine"] = out["machine"] or data.get("machine", {})
        out["runs"].append({"file": str(p), "machine": data.get("machine"), "settings": data.get("settings")})
        for key, value in data.items():
            if isinstance(value, list) and key not in ("runs",):
                out.setdefault(key, [])
                out[key] += [v for v in value if v not in out[key]]
    return out


def kv_table(rows: list[dict[str, Any]]) -> str:
    header = ["backbone", "side", "segmenter", "context tokens", "cache positions", "tokens/position",
              "KV KB/token", "vs backbone"]
    body = [[r["backbone"], r["side"], r.get("segmenter", "–"), r["tokens"], r.get("positions") or r.get("note", "–"),
             r["tokens"] / r["positions"] if r.get("positions") else None,
             r["bytes_per_token"] / 1024 if r.get("bytes_per_token") is not None else None,
             f"{100 * r['ratio']:.1f}%" if r.get("ratio") is not None else "–"] for r in rows]
    return _table(header, body)


def memory_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: peak memory of one generation per (backbone, batch, method)."""
    header = ["backbone", "batch", "method", "tokens", "dtype", "measure", "peak MiB", "above start MiB",
              "weights MiB"]
    body = [[r["backbone"], r["batch"], r["method"], r.get("new_tokens"), r.get("dtype"), r.get("measure"),
             r["peak_bytes"] / 2**20 if r.get("peak_bytes") is not None else None,
             r["working_bytes"] / 2**20 if r.get("working_bytes") is not None else None,
             r["weights_bytes"] / 2**20 if r.get("weights_bytes") is not None else None] for r in rows]
    return _table(header, body)


def attention_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: SentenceVAE attention backend rows (SDPA vs xformers)."""
    header = ["backbone", "method", "batch", "backend", "tokens/s", "× SDPA", "decoder max abs diff",
              "argmax agree", "auto picks", "note"]
    body = [[r["backbone"], r["method"], r["batch"], r["backend"], r.get("tokens_per_s"), r.get("vs_sdpa"),
             f"{r['max_abs_diff']:.3g}" if r.get("max_abs_diff") is not None else None,
             f"{100 * r['argmax_agree']:.1f}%" if r.get("argmax_agree") is not None else None,
             r.get("auto_picks"), r.get("note", "")] for r in rows]
    return _table(header, body)


def long_context_table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "document tokens", "× max positions", "cache positions", "max positions",
              "generated tokens", "KV MB", "peak RSS MB", "seconds", "note"]
    body = [[r["model"], r["tokens"], r["tokens"] / r["max_positions"], r["positions"], r["max_positions"],
             r.get("generated"), r["kv_bytes"] / 2**20 if r.get("kv_bytes") is not None else None,
             r["peak_rss"] / 2**20 if r.get("peak_rss") else None, r.get("seconds"), r.get("note", "")]
            for r in rows]
    return _table(header, body)


def write_markdown(results: dict[str, Any], path: str | Path) -> str:
    """Write the whole report (machine, settings, the three tables) and return its text."""
    m = results.get("machine", {})
    parts = ["# graftlm benchmark results", "",
             f"Machine: {m.get('cpu')} · {m.get('logical_cores')} logical cores · {m.get('memory_gb')} GB · "
             f"torch {m.get('torch')} ({m.get('torch_threads')} threads) · transformers {m.get('transformers')} · "
             f"CUDA: {m.get('cuda') or 'none'} · {m.get('date')} · load average before/after "
             f"{m.get('load_before')} / {m.get('load_after')}", ""]
    if results.get("settings"):
        parts += ["Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items()), ""]
    for run in results.get("runs", []):
        rm, st = run.get("machine") or {}, run.get("settings") or {}
        parts += [f"- run `{run['file']}`: {rm.get('date')}, load {rm.get('load_before')} → {rm.get('load_after')}, "
                  + ", ".join(f"{k}={v}" for k, v in st.items())]
    if results.get("runs"):
        parts.append("")
    if results.get("segments"):
        parts += ["## Segment length of the default segmenter", "",
                  _table(["tokenizer", "text", "segmenter", "segments", "tokens", "mean tokens/segment", "max"],
                         [[s["tokenizer"], s["source"], s["segmenter"], s["segments"], s["tokens"], s["mean"],
                           s["max_len"]] for s in results["segments"]]), ""]
    if results.get("throughput"):
        parts += ["## Throughput (output tokens/s, greedy, fixed output length)", "",
                  throughput_table(results["throughput"]), ""]
    if results.get("breakdown"):
        parts += ["## Where SentenceLLM time goes (batch 1, forward hooks)", "",
                  _table(["backbone", "method", "part", "ms/output token", "time share", "MAC share"],
                         [[r["backbone"], r["method"], r["part"], r["ms_per_token"], f"{100 * r['time_share']:.0f}%",
                           f"{100 * r['mac_share']:.0f}%"] for r in results["breakdown"]]), ""]
    if results.get("kv"):
        parts += ["## KV-cache bytes per context token (measured from the cache tensors)", "",
                  kv_table(results["kv"]), ""]
    if results.get("memory"):
        parts += ["## Peak memory of one generation", "", memory_table(results["memory"]), ""]
    if results.get("attention"):
        parts += ["## SentenceVAE attention: SDPA vs xformers", "", attention_table(results["attention"]), ""]
    if results.get("long_context"):
        parts += ["## Long context", "", long_context_table(results["long_context"]), ""]
    if results.get("notes"):
        parts += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    text = "\n".join(parts)
    write_text(path, text)
    return text


def write_charts(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """PNG charts: tokens/s per backbone and method (one panel per batch size), KV KB/token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written: list[Path] = []
    rows = results.get("throughput") or []
    batches = sorted({r["batch"] for r in rows})
    if rows:
        fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
        for ax, b in zip(axes[0], batches):
            sel = [r for r in rows if r["batch"] == b]
            backbones = list(dict.fromkeys(r["backbone"] for r in sel))
            methods = list(dict.fromkeys(r["method"] for r in sel))
            width = 0.8 / max(len(methods), 1)
            for j, meth in enumerate(methods):
                ys = [next((r["tokens_per_s"] for r in sel if r["backbone"] == bb and r["method"] == meth), 0.0)
                      for bb in backbones]
                ax.bar([i + j * width for i in range(len(backbones))], ys, width, label=meth)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(backbones))], backbones, rotation=15)
            ax.set_ylabel("output tokens/s")
            ax.set_yscale("log")
            ax.set_title(f"batch {b}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    kv = [r for r in results.get("kv") or [] if r.get("bytes_per_token") is not None]
    if kv:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels = [f"{r['backbone']}\n{r['side']} {r.get('segmenter', '')}\n{r['tokens']}" for r in kv]
        ax.bar(range(len(kv)), [r["bytes_per_token"] / 1024 for r in kv],
               color=["tab:gray" if r["side"] == "backbone" else "tab:blue" for r in kv])
        ax.set_xticks(range(len(kv)), labels, fontsize=5, rotation=90)
        ax.set_ylabel("KV-cache KB per context token")
        fig.tight_layout()
        path = out_dir / "kv_memory.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
