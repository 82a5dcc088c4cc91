"""The demo's closing table and ``report.md``, built from ``state.json`` alone."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any

from graftlm.demo.run_folder import RunFolder
from graftlm.training.evaluate import reconstruction_table
from graftlm.atomic import write_text


def merge_svae_evals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine `evaluate_svae` results of several chunks (weighted by targets / segments)."""
    targets = sum(p["targets"] for p in parts)
    segments = sum(p["segments"] for p in parts)
    out: dict[str, Any] = {
        "segments": segments, "targets": targets,
        "loss": sum(p["loss"] * p["targets"] for p in parts) / targets,
        "ppl": math.exp(sum(math.log(p["ppl"]) * p["targets"] for p in parts) / targets),
        "token_accuracy": sum(p["token_accuracy"] * p["targets"] for p in parts) / targets,
        "exact_match": sum(p["exact_match"] * p["segments"] for p in parts) / segments,
    }
    out["examples"] = [e for p in parts for e in p.get("examples", [])]
    return out


SHOWN_EXAMPLES = 3  # reconstruction examples printed on the console


def reconstruction_summary(result: dict[str, Any], *, planned: int) -> str:
    """The held-out reconstruction in a few console lines: exact match, PPL, 3 examples."""
    n = result["segments"]
    lines = [f"held-out reconstruction: {100 * result['exact_match']:.1f} % exact "
             f"({round(result['exact_match'] * n)}/{n} segments{'' if n == planned else f' of {planned}, time budget'}), "
             f"PPL {result['ppl']:.2f}, token accuracy {100 * result['token_accuracy']:.1f} %"]
    for ex in result.get("examples", [])[:SHOWN_EXAMPLES]:
        lines.append(f"  in : {ex['input']!r}\n  out: {ex['output']!r}{'  [exact]' if ex.get('exact') else ''}")
    return "\n".join(lines)


def default_prompt(heldout: list[str], stream: Any, tokenizer: Any) -> tuple[str, str | None]:
    """The first two segments of the first held-out prose paragraph (starts with a letter, no
    indented lines) that has 4+ (else the first segment of the held-out paragraph with most), and
    the paragraph's next segments as the reference continuation."""
    best: list[str] = []
    for doc in heldout:
        segments = stream.segmenter.split(doc)
        prose = doc[:1].isalpha() and not re.search(r"\n[ \t]", doc)  # skip code and indented lists
        if len(segments) >= 4 and prose:
            return "".join(segments[:2]), "".join(segments[2:6])
        if len(segments) > len(best):
            best = segments
    return "".join(best[:1]), ("".join(best[1:5]) or None)


def _num(x: Any, digits: int = 1) -> str:
    if not isinstance(x, (int, float)):
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if abs(x) >= 1e5:
        return f"{x:.3g}"
    return f"{x:,.{digits}f}"


def closing_table(run: RunFolder) -> str:
    """Markdown table: backbone vs SentenceLLM, measured in this run."""
    m = run.result("measure")
    setup = run.result("setup")
    name = _short_name(run.state["settings"]["model"])
    ratio = lambda a, b: f"×{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "–"
    rows = [
        (f"output tokens/s (batch 1, greedy, {m.get('bench_new_tokens')} new tokens after a "
         f"{m.get('bench_prompt_tokens')}-token prompt; SLLM in sentences of {m.get('bench_sentence_len')} tokens)",
         _num(m.get("backbone_tokens_per_s")), _num(m.get("sllm_tokens_per_s")),
         ratio(m.get("sllm_tokens_per_s"), m.get("backbone_tokens_per_s"))),
        (f"KV-cache bytes per text token (after prefilling the same held-out text: {m.get('kv_tokens')} tokens "
         f"as the backbone tokenizes it{_sllm_tokens(m)}; SLLM: {m.get('sllm_kv_positions')} sentence positions)",
         _num(m.get("backbone_kv_bytes_per_token"), 0), _num(m.get("sllm_kv_bytes_per_token"), 0),
         ratio(m.get("sllm_kv_bytes_per_token"), m.get("backbone_kv_bytes_per_token"))),
        (f"causal PPL on {m.get('ppl_text', 'held-out')} text ({_ppl_detail(m)})",
         _num(m.get("backbone_ppl"), 2), _num(m.get("sllm_ppl_tokens", m.get("sllm_ppl")), 2),
         ratio(m.get("sllm_ppl_tokens", m.get("sllm_ppl")), m.get("backbone_ppl"))),
        ("backbone forward passes per sentence (held-out mean sentence: "
         f"{_num(setup.get('mean_segment_tokens'))} tokens)",
         _num(m.get("backbone_steps_per_sentence")),
         f"1 (+ {_num(m.get('sllm_decoder_steps_per_sentence'))} sentence-decoder steps)",
         ratio(1.0, m.get("backbone_steps_per_sentence"))),
    ]
    cpu = {side: m.get(f"{side}_cpu_seconds") for side in ("backbone", "sllm")}
    if all(isinstance(v, list) and v and min(v) > 0 for v in cpu.values()) and m.get("bench_new_tokens"):
        per_cpu = {side: m["bench_new_tokens"] / statistics.median(v) for side, v in cpu.items()}  # as tokens/s
        rows.insert(1, (f"output tokens per second of process CPU time (same runs; all {m.get('torch_threads')} "
                        "thread(s) counted, so less sensitive to other programs' load)",
                        _num(per_cpu["backbone"]), _num(per_cpu["sllm"]), ratio(per_cpu["sllm"], per_cpu["backbone"])))
    if isinstance(m.get("sllm_bits_per_byte"), (int, float)):  # tokenization-independent, from graftlm.evaluate
        rows.insert(3, (f"bits per byte on the same text ({m.get('bytes')} UTF-8 bytes)",
                        _num(m.get("backbone_bits_per_byte"), 3), _num(m.get("sllm_bits_per_byte"), 3),
                        ratio(m.get("sllm_bits_per_byte"), m.get("backbone_bits_per_byte"))))
    lines = [f"| measured in this run | {name} (backbone) | SentenceLLM (grafted) | SLLM / backbone |",
             "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def _ppl_detail(m: dict[str, Any]) -> str:
    if "ppl_paragraphs" in m:
        return f"tokens of sentences 2…n of {m.get('ppl_paragraphs')} paragraphs, {m.get('ppl_targets')} tokens"
    return f"per token of each side's own tokenization, {m.get('eval_texts', '?')} held-out texts"


def _sllm_tokens(m: dict[str, Any]) -> str:
    n = m.get("sllm_kv_text_tokens")
    if n is None or n == m.get("kv_tokens"):
        return ""
    return f", {n} as the SLLM tokenizes it sentence by sentence"


def _list(xs: Any) -> str:
    return ", ".join(f"{x:.2f}" for x in xs) if isinstance(xs, list) else "–"


def _short_name(model: str) -> str:
    return "SmolLM2-135M" if model == "smollm2" else Path(model).name or model


def _ended(record: dict[str, Any]) -> str:
    if record.get("stopped_by_time"):
        return f"ended on time: its time budget was up after {record.get('steps')} of {record.get('planned_steps')} planned steps"
    return "ended on steps: all planned steps"


def _eval_cut(ev: dict[str, Any]) -> str:
    return f" (of {ev.get('planned_segments')}: the phase's time budget ended the rest)" if ev.get("cut_by_time") else ""


def _cpu_runs(m: dict[str, Any]) -> str:
    if not isinstance(m.get("backbone_cpu_seconds"), list):
        return ""
    return (f"; process CPU time (s): backbone {_list(m.get('backbone_cpu_seconds'))}, SentenceLLM "
            f"{_list(m.get('sllm_cpu_seconds'))}")


def busy_warnings(run: RunFolder) -> list[str]:
    return [w for p in run.state["phases"].values() if (w := p.get("busy_warning"))]


def busy_summary(run: RunFolder) -> str | None:
    """One line naming the phases that ran on a busy machine, with the worst figures, or None."""
    busy = {k: p["timing"] for k, p in run.state["phases"].items() if p.get("busy_warning") and p.get("timing")}
    if not busy:
        return None
    util = min(t.get("cpu_utilisation") or 1.0 for t in busy.values())
    load = max(t.get("load_avg_1min") or 0.0 for t in busy.values())
    cpus = next(iter(busy.values())).get("cpus")
    return (f"warning: the machine was busy during {', '.join(busy)} (down to {100 * util:.0f} % of the CPU time "
            f"the threads could use, load average up to {load:.1f} on {cpus} CPUs): the tokens/s row and the "
            "step counts are below this machine's real speed; rerun on an idle machine to compare speeds")


def timing_table(run: RunFolder) -> str:
    """Per phase: its share of the budget, wall clock, process CPU time, CPU use and load average."""
    lines = ["| phase | time budget (s) | wall clock (s) | CPU time (s) | CPU ÷ (wall × threads) | load average at end | ended |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for phase, rec in run.state["phases"].items():
        t = rec.get("timing")
        if not t:
            continue
        ended = ("on time" if rec.get("stopped_by_time") or rec.get("cut_by_time") else
                 "on steps" if "steps" in rec else "done")
        lines.append(f"| {phase} | {_num(rec.get('allowance_s'), 0)} | {_num(t.get('wall_s'))} | {_num(t.get('cpu_s'))} | "
                     f"{_num(100 * t['cpu_utilisation'], 0) + ' %' if isinstance(t.get('cpu_utilisation'), float) else '–'} "
                     f"({t.get('threads')} thread{'s' if t.get('threads') != 1 else ''}) | {_num(t.get('load_avg_1min'), 2)} on {t.get('cpus')} CPUs | {ended} |")
    return "\n".join(lines)


def _precision(p: Any) -> str:
    return {"bf16": "bf16 (autocast)", "fp32": "fp32"}.get(p, str(p))


def _fmt_seconds(s: Any) -> str:
    return f"{float(s):.0f} s" if isinstance(s, (int, float)) else "–"


def write_report(run: RunFolder) -> Path:
    """Write ``RUN/report.md`` and return its path."""
    st, s = run.state, run.state["settings"]
    setup, svae, ev, sllm, gen, m = (run.result(p) for p in ("setup", "svae", "svae_eval", "sllm", "generate", "measure"))
    budget = st.get("budget", {})
    cmd = st.get("command", "graftlm demo")
    lines = [
        f"# graftlm demo run `{run.path.name}`", "",
        f"Created {st.get('created')}; {st.get('sessions', 1)} session(s); total wall time "
        f"**{_fmt_seconds(st.get('elapsed'))}** against a budget of {_fmt_seconds(budget.get('total_s'))} "
        f"(`--minutes {s['minutes']:g}`). Backbone loading took {', '.join(map(str, st.get('load_seconds', [])))} s.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible, {m.get('torch_threads', '?')} torch thread{'' if m.get('torch_threads') == 1 else 's'}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; training precision "
        f"{_precision(setup.get('precision'))}, measurements in fp32. Command: `{cmd}` (settings in state.json).",
        "", "## What was trained, on what", "",
        f"- Backbone: {setup.get('backbone')}.",
        f"- Corpus: {setup.get('corpus')}: {setup.get('train_paragraphs')} training paragraphs "
        f"({setup.get('train_segments')} segments, {setup.get('train_tokens')} tokens), "
        f"{setup.get('heldout_paragraphs')} held-out paragraphs (hash split, never trained on). Segments are cut "
        f"after punctuation with at most {s['max_tokens']} tokens (lossless `RegexSegmenter`).",
        f"- SentenceVAE: {svae.get('layers')} encoder + {svae.get('layers')} decoder layer(s), width "
        f"{svae.get('hidden_size')}, {svae.get('num_heads')} heads, vocabulary {svae.get('vocab_size')} "
        f"(the backbone's tokenizer); token embeddings and the tied output head are the backbone's embedding "
        f"matrix, frozen. {svae.get('trainable_parameters')} of {svae.get('parameters')} parameters trained for "
        f"**{svae.get('steps')} steps** of {svae.get('batch_size')} segments in {_fmt_seconds(svae.get('seconds'))} "
        f"(lr {svae.get('lr')}, warm-up + cosine; {_ended(svae)}); "
        f"last training loss {_num(svae.get('last_loss'), 3)} (focal).",
        f"- SentenceLLM: the VAE above grafted onto the backbone (`graftlm.graft`), LoRA r={sllm.get('lora_r')} on "
        f"{sllm.get('lora_targets')} in the frozen backbone + the VAE's layers + termination head: "
        f"{sllm.get('trainable_parameters')} of {sllm.get('parameters')} parameters trained for "
        f"**{sllm.get('steps')} steps** of {sllm.get('batch_size')} paragraphs (≤ {s['max_sentences']} sentences each) "
        f"in {_fmt_seconds(sllm.get('seconds'))} ({_ended(sllm)}); last training loss {_num(sllm.get('last_loss'), 3)}.",
        "", "## SentenceVAE: held-out reconstruction", "",
        f"{ev.get('segments')} held-out segments{_eval_cut(ev)}: exact match (greedy decode from the vector) "
        f"**{_num(100 * ev.get('exact_match', float('nan')))} %**, teacher-forced PPL **{_num(ev.get('ppl'), 2)}**, "
        f"token accuracy {_num(100 * ev.get('token_accuracy', float('nan')))} %. Examples (like the paper's Table 2):",
        "", reconstruction_table(ev.get("examples", [])) if ev.get("examples") else "(none)",
        "", "## Generation (greedy, streamed sentence by sentence)", "",
        f"- Prompt: `{gen.get('prompt')!r}`",
        f"- SentenceLLM ({len(gen.get('sllm_sentences', []))} sentences, {gen.get('sllm_new_tokens')} tokens): "
        f"`{gen.get('sllm_text')!r}`",
        f"- Backbone alone (same number of tokens): `{gen.get('backbone_text')!r}`",
    ]
    if gen.get("reference"):
        lines.append(f"- The held-out text actually continues: `{gen.get('reference')!r}`")
    lines += ["", "## Closing table", "", closing_table(run), "",
              f"Timing runs, wall clock (s): backbone {_list(m.get('backbone_seconds'))}, SentenceLLM "
              f"{_list(m.get('sllm_seconds'))}{_cpu_runs(m)}. "
              f"Termination head accuracy on the held-out texts: {_num(100 * m.get('termination_accuracy', float('nan')))} %.",
              *[f"\n**{w}**" for w in busy_warnings(run)],
              "", "## Where the time went", "", timing_table(run),
              "", "## Loss curves", ""]
    for phase in ("svae", "sllm"):
        if (run.path / f"{phase}-loss.png").is_file():
            lines.append(f"![{phase} loss]({phase}-loss.png)")
    lines += ["", "## Reading these numbers", "",
              "A few minutes of CPU training is far from the paper's 300K (SVAE) and 1.6M (SLLM) iterations on "
              "GPUs: expect low exact match and an SLLM perplexity well above the backbone's. The speed and "
              "memory rows do not depend on training: they measure what one backbone step per sentence "
              "costs against one per token, here, on this machine (a shared machine makes them noisy). The "
              "PPL is causal for both sides (the SentenceLLM never sees the sentence it predicts), unlike the "
              "paper's SLLM numbers, which came from code that let positions attend to the next sentence.", ""]
    path = run.path / "report.md"
    write_text(path, "\n".join(str(x) for x in lines))
    return path
