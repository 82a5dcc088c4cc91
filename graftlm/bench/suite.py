"""The measurements, as functions returning plain-dict rows (shared by the CLI and pytest suites).

Throughput rows: ``backbone, batch, method, new_tokens, tokens_per_s, seconds, spread`` and, for
SentenceLLM rows, ``speedup`` (vs the lean loop of the same backbone/batch), ``mac_bound``,
``of_bound``. KV rows: ``backbone, side, segmenter, tokens, positions, bytes, bytes_per_token,
ratio``.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import torch

from graftlm.bench.breakdown import sllm_time_breakdown
from graftlm.bench.corpus import english_text, segment_stats, text_with_tokens
from graftlm.bench.macs import mac_bound
from graftlm.bench.models import Backbone
from graftlm.evaluation.memory import (
    backbone_prefill_cache,
    cache_length,
    kv_cache_bytes,
)
from graftlm.evaluation.speed import prompt_segments, shared_copy, sllm_prefill_cache  # noqa: F401  (shared with the demo)
from graftlm.evaluation.throughput import (
    hf_generate_runner,
    lean_loop_runner,
    prompt_batch,
    sllm_runner,
    time_interleaved,
)
from graftlm.segmenter import RegexSegmenter
from graftlm.sllm import graft
from graftlm.training.models import special_ids
from graftlm.vae import SentenceVAE, SentenceVAEConfig

Log = Callable[[str], None]


def vae_config(backbone: Backbone, layers: int):
    """Official-architecture SentenceVAE config sized like the backbone (h and heads = backbone's);
    ``backbone.vae_encoder="positional"``: issue 19's order-preserving encoder (the recipes' choice)
    in place of the official transformer encoder, everything else as official."""
    cfg = backbone.config
    pad, bos, eos = special_ids(backbone.tokenizer, cfg)
    return SentenceVAEConfig.official(vocab_size=int(cfg.vocab_size), hidden_size=int(cfg.hidden_size),
                                      num_heads=int(cfg.num_attention_heads), num_layers=layers,
                                      pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
                                      encoder=backbone.vae_encoder)


def build_sllm(backbone: Backbone, layers: int, *, seed: int = 0) -> Any:
    """Graft a random official-size H``layers`` SentenceVAE onto a weight-sharing copy of
    ``backbone``'s model (eval mode); the backbone itself stays usable for the baselines."""
    torch.manual_seed(seed)
    param = next(backbone.model.parameters())
    vae = SentenceVAE(vae_config(backbone, layers)).to(device=param.device, dtype=param.dtype).eval()
    return graft(shared_copy(backbone.model), vae).eval()


def default_segmenter(tokenizer: Any, min_tokens: int | None = None, max_tokens: int = 64) -> Any:
    """The default ``RegexSegmenter`` (semantic rule), optionally with ``min_tokens`` merging."""
    return RegexSegmenter(max_tokens=max_tokens, min_tokens=min_tokens, tokenizer=tokenizer)


def measure_segments(name: str, tokenizer: Any, sources: tuple[str, ...] = ("pydoc", "kjv"),
                     min_tokens: tuple[int | None, ...] = (None,)) -> list[dict[str, Any]]:
    """Mean segment length of the segmenter on each packaged English text."""
    rows = []
    for src in sources:
        try:
            text = english_text(src)
        except (ValueError, ImportError):
            continue
        for mt in min_tokens:
            st = segment_stats(text, tokenizer, default_segmenter(tokenizer, mt))
            rows.append(dict(tokenizer=name, source=src, segmenter=_seg_label(mt), segments=st.segments,
                             tokens=st.tokens, mean=st.mean, max_len=st.max_len))
    return rows


def _seg_label(min_tokens: int | None) -> str:
    return "default (semantic)" if min_tokens is None else f"min_tokens={min_tokens}"


def throughput_rows(backbone: Backbone, *, batches: tuple[int, ...], new_tokens: int, sentence_len: int,
                    vae_layers: tuple[int, ...] = (1, 2, 4), repeats: int = 3, prompt_tokens: int = 64,
                    methods: tuple[str, ...] = ("hf_generate", "lean_loop", "sllm"),
                    log: Log = print) -> list[dict[str, Any]]:
    """Time every method at every batch size on ``backbone``, exactly ``new_tokens`` per prompt.

    Methods are timed in interleaved rounds (every method once per round, order rotated), so a
    load change on a shared machine hits all of them alike; the speed-up vs the lean loop is the
    median of the per-round ratios.
    """
    tok = backbone.tokenizer
    _, ids = text_with_tokens(tok, max(batches) * prompt_tokens)
    sllms = {h: build_sllm(backbone, h) for h in vae_layers} if "sllm" in methods else {}
    rows: list[dict[str, Any]] = []
    for b in batches:
        x = prompt_batch(ids, b, prompt_tokens)
        makers: dict[str, Callable[[int], Any]] = {}
        extra: dict[str, dict[str, Any]] = {}
        if "lean_loop" in methods:
            makers["lean_loop"] = lambda n, x=x: lean_loop_runner(backbone.model, x, n)
        if "hf_generate" in methods:
            makers["hf_generate"] = lambda n, x=x: hf_generate_runner(backbone.model, x, n)
        for h, sllm in sllms.items():
            prompts = prompt_segments(tok, x, sllm.vae.config, sentence_len)
            makers[f"sllm-H{h}"] = lambda n, s=sllm, p=prompts: sllm_runner(s, p, n, sentence_len)
            bound = mac_bound(backbone.config, vae_config(backbone, h), sentence_len,
                              prompt_tokens=prompt_tokens, new_tokens=new_tokens)
            extra[f"sllm-H{h}"] = dict(mac_bound=bound.ratio, sentence_len=sentence_len)
        timings = time_interleaved({m: (mk(new_tokens), mk(min(new_tokens, 2 * sentence_len)))
                                    for m, mk in makers.items()}, repeats=repeats)
        for m, t in timings.items():
            row = dict(backbone=backbone.name, batch=b, method=m, new_tokens=new_tokens, threads=torch.get_num_threads(),
                       tokens_per_s=t.tokens_per_s, seconds=t.seconds, cpu_seconds=t.cpu_seconds, spread=t.spread,
                       cpu_tokens_per_s=t.tokens / statistics.median(t.cpu_seconds))
            if m != "lean_loop" and "lean_loop" in timings:
                lean_t = timings["lean_loop"]
                ratios = [lt / st for lt, st in zip(lean_t.seconds, t.seconds)]
                row["speedup"] = statistics.median(ratios)
                row["speedup_runs"] = ratios
                row["cpu_speedup"] = statistics.median(lt / st for lt, st in zip(lean_t.cpu_seconds, t.cpu_seconds))
            row.update(extra.get(m, {}))
            if "mac_bound" in row and "speedup" in row:
                row["of_bound"] = row["speedup"] / row["mac_bound"]
                row["cpu_of_bound"] = row["cpu_speedup"] / row["mac_bound"]
            rows.append(row)
            log(f"  {backbone.name} b={b} {m}: {t.tokens_per_s:.2f} tok/s "
                f"(runs {', '.join(f'{s:.2f}' for s in t.seconds)} s)" +
                (f" ×{row['speedup']:.2f} lean (CPU time ×{row['cpu_speedup']:.2f})" if "speedup" in row else "") +
                (f", MAC bound ×{row['mac_bound']:.2f}" if "mac_bound" in row else ""))
    return rows


def kv_rows(backbone: Backbone, *, context_tokens: tuple[int, ...] = (1024, 4096, 16384),
            segmenters: tuple[int | None, ...] = (None, 8, 16), sllm: Any = None,
            log: Log = print) -> list[dict[str, Any]]:
    """KV bytes per context token after prefilling real English text: backbone (up to its
    position limit) and SentenceLLM with each segmenter setting (``None`` = the default semantic rule, else
    ``min_tokens`` merging)."""
    tok = backbone.tokenizer
    limit = getattr(backbone.config, "max_position_embeddings", None)
    rows: list[dict[str, Any]] = []
    base_per_token: float | None = None
    for n in context_tokens:
        text, ids = text_with_tokens(tok, n)
        if limit is None or n <= limit:
            cache = backbone_prefill_cache(backbone.model, torch.tensor([ids]))
            nbytes, pos = kv_cache_bytes(cache), cache_length(cache)
            del cache
            base_per_token = nbytes / n
            rows.append(dict(backbone=backbone.name, side="backbone", segmenter="–", tokens=n, positions=pos,
                             bytes=nbytes, bytes_per_token=nbytes / n, ratio=1.0))
            log(f"  {backbone.name} backbone {n} tokens: {nbytes / n / 1024:.2f} KB/token")
        if sllm is None:
            continue
        for mt in segmenters:
            seg = default_segmenter(tok, mt, max_tokens=sllm.vae.config.max_segment_tokens or 64)
            try:
                cache, positions = sllm_prefill_cache(sllm, text, tok, seg)
            except ValueError as err:  # more sentences than the body has positions
                rows.append(dict(backbone=backbone.name, side="sllm", segmenter=_seg_label(mt), tokens=n,
                                 positions=None, bytes=None, bytes_per_token=None, ratio=None, note=str(err)))
                log(f"  {backbone.name} sllm {_seg_label(mt)} {n} tokens: {err}")
                continue
            nbytes = kv_cache_bytes(cache)
            del cache
            rows.append(dict(backbone=backbone.name, side="sllm", segmenter=_seg_label(mt), tokens=n,
                             positions=positions, bytes=nbytes, bytes_per_token=nbytes / n,
                             ratio=(nbytes / n) / base_per_token if base_per_token else None))
            log(f"  {backbone.name} sllm {_seg_label(mt)} {n} tokens: {positions} positions, "
                f"{nbytes / n / 1024:.2f} KB/token")
    return rows


def breakdown_rows(backbone: Backbone, *, sentence_len: int, new_tokens: int = 64, layers: int = 1,
                   prompt_tokens: int = 64, log: Log = print) -> list[dict[str, Any]]:
    """Batch-1 SentenceLLM generation split by module (measured seconds per output token) beside
    each module's share of the MAC count: shows whether time goes where the arithmetic is."""
    sllm = build_sllm(backbone, layers)
    _, ids = text_with_tokens(backbone.tokenizer, prompt_tokens)
    prompts = prompt_segments(backbone.tokenizer, prompt_batch(ids, 1, prompt_tokens), sllm.vae.config, sentence_len)
    run = sllm_runner(sllm, prompts, new_tokens, sentence_len)
    run()  # warm-up
    t = sllm_time_breakdown(sllm, run)
    bound = mac_bound(backbone.config, vae_config(backbone, layers), sentence_len,
                      prompt_tokens=prompt_tokens, new_tokens=new_tokens)
    p = bound.sllm_parts
    macs = {"decoder_head": p["decoder_head"], "decoder": p["decoder_layers"] + p["sentence_setup"],
            "encoder": p["encoder"], "body": p["backbone_step"] + p["termination"], "other": 0.0}
    total_macs = sum(macs.values())
    rows = []
    for part in ("decoder_head", "decoder", "encoder", "body", "other"):
        rows.append(dict(backbone=backbone.name, method=f"sllm-H{layers}", part=part,
                         ms_per_token=1000 * t[part] / t["tokens"], time_share=t[part] / t["total"],
                         mac_share=macs[part] / total_macs))
    log(f"  {backbone.name} H{layers} breakdown: " + ", ".join(
        f"{r['part']} {100 * r['time_share']:.0f}% (MACs {100 * r['mac_share']:.0f}%)" for r in rows))
    return rows
