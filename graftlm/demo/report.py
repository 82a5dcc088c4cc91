"""The demo's closing table and ``report.md``, built from ``state.json`` alone."""

from __future__ import annotations

import math
import os
import re
import platform
from pathlib import Path
from typing import Any

from graftlm.demo.run_folder import RunFolder
from graftlm.training.evaluate import reconstruction_table


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
        (f"KV-cache bytes per text token ({m.get('kv_tokens')} held-out tokens; SLLM: "
         f"{m.get('sllm_kv_positions')} sentence positions)",
         _num(m.get("backbone_kv_bytes_per_token"), 0), _num(m.get("sllm_kv_bytes_per_token"), 0),
         ratio(m.get("sllm_kv_bytes_per_token"), m.get("backbone_kv_bytes_per_token"))),
        (f"causal PPL on {m.get('ppl_text', 'held-out')} text (tokens of sentences 2…n of "
         f"{m.get('ppl_paragraphs')} paragraphs, {m.get('ppl_targets')} tokens)",
         _num(m.get("backbone_ppl"), 2), _num(m.get("sllm_ppl_tokens"), 2),
         ratio(m.get("sllm_ppl_tokens"), m.get("backbone_ppl"))),
        ("backbone forward passes per sentence (held-out mean sentence: "
         f"{_num(setup.get('mean_segment_tokens'))} tokens)",
         _num(m.get("backbone_steps_per_sentence")),
         f"1 (+ {_num(m.get('sllm_decoder_steps_per_sentence'))} sentence-decoder steps)",
         ratio(1.0, m.get("backbone_steps_per_sentence"))),
    ]
    lines = [f"| measured in this run | {name} (backbone) | SentenceLLM (grafted) | SLLM / backbone |",
             "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def _list(xs: Any) -> str:
    return ", ".join(f"{x:.2f}" for x in xs) if isinstance(xs, list) else "–"


def _short_name(model: str) -> str:
    return "SmolLM2-135M" if model == "smollm2" else Path(model).name or model


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
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible, {m.get('torch_threads', '?')} torch threads, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; training precision "
        f"{setup.get('precision')} (autocast), measurements in fp32. Command: `{cmd}` (settings in state.json).",
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
        f"(lr {svae.get('lr')}, warm-up + cosine; {'stopped by its time budget' if svae.get('stopped_by_time') else 'all planned steps'}); "
        f"last training loss {_num(svae.get('last_loss'), 3)} (focal).",
        f"- SentenceLLM: the VAE above grafted onto the backbone (`graftlm.graft`), LoRA r={sllm.get('lora_r')} on "
        f"{sllm.get('lora_targets')} in the frozen backbone + the VAE's layers + termination head: "
        f"{sllm.get('trainable_parameters')} of {sllm.get('parameters')} parameters trained for "
        f"**{sllm.get('steps')} steps** of {sllm.get('batch_size')} paragraphs (≤ {s['max_sentences']} sentences each) "
        f"in {_fmt_seconds(sllm.get('seconds'))}; last training loss {_num(sllm.get('last_loss'), 3)}.",
        "", "## SentenceVAE: held-out reconstruction", "",
        f"{ev.get('segments')} held-out segments: exact match (greedy decode from the vector) "
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
              f"Timing runs (s): backbone {_list(m.get('backbone_seconds'))}, SentenceLLM {_list(m.get('sllm_seconds'))}. "
              f"Termination head accuracy on the PPL paragraphs: {_num(100 * m.get('termination_accuracy', float('nan')))} %.",
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
    path.write_text("\n".join(str(x) for x in lines))
    return path
