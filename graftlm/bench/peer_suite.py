"""Batch-1 speed against what users try first, on docs and prose prompts: HF ``generate``, the
lean loop, HF prompt lookup (5 and 10 tokens), HF assisted generation (named drafts and, as a
labelled probe, the backbone's own first k layers), the SentenceLLM-H1 at fixed sentence lengths
and, if given, a trained SentenceLLM as trained (its own sentence lengths, stop head on).

Rows: ``backbone, source, mode (greedy|sampled), method, tokens, tokens_per_s, seconds, speedup``
(vs plain HF generate, median of per-round ratios), ``equals_greedy`` (True/False for greedy rows
whose tokens were compared with plain greedy's; None where there is nothing to compare) and
``note``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable

import torch

from graftlm.bench.corpus import text_with_tokens
from graftlm.bench.models import Backbone
from graftlm.bench.peers import TEMPERATURE, TOP_P, first_layers_draft, peer_runners
from graftlm.bench.suite import build_sllm
from graftlm.evaluation.throughput import lean_generate, prompt_batch, time_interleaved
from graftlm.evaluation.speed import prompt_segments

Log = Callable[[str], None]
SOURCES = ("pydoc", "kjv")
MODES = ("greedy", "sampled")


class LeanRunner:
    """`lean_generate` as a runner that keeps its output (greedy only)."""

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> None:
        self.model, self.input_ids, self.new_tokens = model, input_ids, new_tokens
        self.last: torch.Tensor | None = None

    def __call__(self) -> int:
        self.last = lean_generate(self.model, self.input_ids, self.new_tokens)
        return self.last.numel()


class SllmRunner:
    """One SentenceLLM generation. ``sentence_len`` set: fixed-length mode (stop head and eos
    ignored, exactly ``new_tokens`` tokens in sentences of that length); None: as trained (the
    model's own sentence lengths and stop decisions, at most ``new_tokens``), counting what it made."""

    def __init__(self, sllm: Any, prompts: Any, new_tokens: int, sentence_len: int | None, *, sample: bool,
                 seed: int = 0) -> None:
        self.sllm, self.prompts, self.new_tokens, self.sentence_len = sllm, prompts.to(sllm.device), new_tokens, sentence_len
        self.sample, self.seed = sample, seed
        self.last_sentences: list[int] = []

    @torch.inference_mode()
    def __call__(self) -> int:
        sampling = dict(do_sample=True, temperature=TEMPERATURE, top_p=TOP_P) if self.sample else dict(do_sample=False)
        if self.sample:
            torch.manual_seed(self.seed)
        fixed = self.sentence_len is not None
        n_prompt = int(self.prompts.sentence_mask.sum(1).max())
        per_sentence = self.sentence_len or self.sllm.vae.config.max_segment_tokens or 64
        out = self.sllm.generate(self.prompts, None, max_sentences=n_prompt + self.new_tokens,
                                 max_new_tokens=self.new_tokens, max_tokens_per_sentence=per_sentence,
                                 ignore_stop=fixed, ignore_eos=fixed, return_dict=True, **sampling)
        counts = list(out.num_new_tokens)
        if fixed and any(c != self.new_tokens for c in counts):
            raise RuntimeError(f"SLLM gave {counts} output tokens per prompt, expected {self.new_tokens}")
        self.last_sentences = list(out.num_new_sentences)
        return sum(counts)


def trained_quality(run_dir: str | Path) -> dict[str, Any]:
    """Bits per byte of a demo run's SentenceLLM and backbone, as ``graftlm.evaluate`` measured them
    in that run (its ``state.json``, phase 'measure'); empty if the run has no finished measurement."""
    state = json.loads((Path(run_dir) / "state.json").read_text())
    measure = state.get("phases", {}).get("measure") or {}
    keys = ("sllm_bits_per_byte", "backbone_bits_per_byte")
    out = {k: measure[k] for k in keys if k in measure}
    for phase in ("svae", "sllm"):  # how much training the model had
        steps = (state.get("phases", {}).get(phase) or {}).get("steps")
        if steps is not None:
            out[f"{phase}_steps"] = steps
    return out


def _rows_of(timings: dict[str, Any], runners: dict[str, Any], *, backbone: str, source: str, mode: str,
             notes: dict[str, str]) -> list[dict[str, Any]]:
    ref_t = timings["hf_generate"]
    ref = getattr(runners["hf_generate"], "last", None)
    rows = []
    for name, t in timings.items():
        last = getattr(runners[name], "last", None)
        equal = None
        if mode == "greedy" and ref is not None and last is not None and last.shape == ref.shape:
            equal = bool(torch.equal(last, ref))
        elif mode == "greedy" and name.startswith("sllm"):
            equal = False  # another model: its tokens are its own
        rows.append(dict(backbone=backbone, source=source, mode=mode, batch=1, method=name, tokens=t.tokens,
                         tokens_per_s=t.tokens_per_s, seconds=t.seconds, spread=t.spread,
                         speedup=statistics.median(r / s for r, s in zip(ref_t.seconds, t.seconds)),
                         cpu_seconds=t.cpu_seconds,
                         cpu_speedup=statistics.median(r / s for r, s in zip(ref_t.cpu_seconds, t.cpu_seconds)),
                         equals_greedy=equal, note=notes.get(name, "")))
    return rows


def peer_rows(backbone: Backbone, *, new_tokens: int = 128, prompt_tokens: int = 64,
              sentence_lens: tuple[int, ...] = (8,), sources: tuple[str, ...] = SOURCES,
              modes: tuple[str, ...] = MODES, drafts: dict[str, torch.nn.Module] | None = None,
              self_draft_layers: int | None = 4, trained: Any = None, trained_note: str = "",
              repeats: int = 3, log: Log = print) -> list[dict[str, Any]]:
    """Time every method on one prompt per text source, interleaved per (source, mode)."""
    tok = backbone.tokenizer
    drafts = dict(drafts or {})
    notes: dict[str, str] = {}
    if self_draft_layers:
        label = f"first-{self_draft_layers}-layers"
        drafts[label] = first_layers_draft(backbone.model, self_draft_layers)
        notes[f"assisted:{label}"] = "probe: the backbone's own first layers as draft, untrained"
    sllm = build_sllm(backbone, 1) if sentence_lens else None
    rows: list[dict[str, Any]] = []
    for source in sources:
        _, ids = text_with_tokens(tok, prompt_tokens, source)
        x = prompt_batch(ids, 1, prompt_tokens)
        for mode in modes:
            sample = mode == "sampled"
            runners: dict[str, Any] = dict(peer_runners(backbone.model, x, new_tokens, sample=sample, drafts=drafts))
            if not sample:
                runners["lean_loop"] = LeanRunner(backbone.model, x, new_tokens)
            for L in sentence_lens:
                runners[f"sllm-H1 L={L}"] = SllmRunner(sllm, prompt_segments(tok, x, sllm.vae.config, L), new_tokens,
                                                      L, sample=sample)
                notes[f"sllm-H1 L={L}"] = "untrained SentenceVAE, fixed sentence length (speed only)"
            if trained is not None:
                runners["sllm trained"] = SllmRunner(
                    trained, prompt_segments(tok, x, trained.vae.config, trained.vae.config.max_segment_tokens or 64),
                    new_tokens, None, sample=sample)
                notes["sllm trained"] = trained_note
            timings = time_interleaved({n: (r, None) for n, r in runners.items()}, repeats=repeats)
            got = _rows_of(timings, runners, backbone=backbone.name, source=source, mode=mode, notes=notes)
            if trained is not None:
                got[-1]["sentences"] = runners["sllm trained"].last_sentences
            rows += got
            for r in got:
                log(f"  {backbone.name} {source} {mode} {r['method']}: {r['tokens_per_s']:.2f} tok/s "
                    f"×{r['speedup']:.2f} HF generate, equals greedy: {r['equals_greedy']}")
    return rows


def best_identical_peer(rows: list[dict[str, Any]], source: str) -> dict[str, Any] | None:
    """The fastest greedy row on ``source`` whose output equals plain greedy (HF generate itself counts)."""
    ok = [r for r in rows if r["source"] == source and r["mode"] == "greedy" and r["equals_greedy"]
          and not r["method"].startswith("sllm")]
    return max(ok, key=lambda r: r["tokens_per_s"], default=None)
