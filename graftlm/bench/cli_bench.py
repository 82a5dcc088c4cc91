"""`graftlm bench`: throughput, KV memory and long context, backbone vs SentenceLLM, in one run.

Writes ``results.json``, ``results.md`` (the tables of docs/benchmarks.md) and PNG charts into
``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from graftlm.attention import set_attention_backend
from graftlm.bench import report, suite
from graftlm.bench.device_parts import attention_rows, peak_memory_rows
from graftlm.bench.long_context import long_context_rows
from graftlm.bench.models import ALL_BACKBONES, BACKBONES, build_backbone
from graftlm.bench.peer_cli import check_peer_args, measure_peers

PARTS = ("segments", "throughput", "peers", "breakdown", "kv", "long", "memory", "attention")
METHODS = ("hf_generate", "lean_loop", "sllm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON",
                   help="measure nothing: merge these results.json files into --out (report + charts)")
    p.add_argument("--out", default="results", help="folder for results.{json,md} and charts (default: results/)")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(ALL_BACKBONES),
                   metavar="NAME", help="backbones to measure, in this order (default: "
                   f"{' '.join(BACKBONES)}; OPT sizes have random weights; tiny-opt is a toy for dry runs)")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                   help=f"what to measure (default: {' '.join(PARTS)}); 'memory' = peak memory per method, SLLM at "
                   "the smallest --layers depth (torch.cuda.max_memory_allocated on a GPU), 'attention' = "
                   "SLLM-H1 with its SentenceVAE on SDPA vs xformers")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="batch sizes (default: 1 8)")
    p.add_argument("--batch32", action="store_true",
                   help="also batch 32 (with --batch32-tokens output tokens, one timed run; slow on a CPU)")
    p.add_argument("--batch32-tokens", type=int, default=64, metavar="N",
                   help="output tokens per prompt for --batch32 (default: 64)")
    p.add_argument("--batch-tokens", nargs="*", default=[], metavar="BATCH=N",
                   help="fewer output tokens at some batch sizes, e.g. 8=64 (default: --new-tokens everywhere)")
    p.add_argument("--new-tokens", type=int, default=256, help="output tokens per prompt (fixed)")
    p.add_argument("--tokens-for", nargs="*", default=["opt-1.3b=64"], metavar="BACKBONE=N",
                   help="fewer output tokens for slow backbones (default: opt-1.3b=64); pass nothing to disable")
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2, 4], help="SentenceVAE depths (H1/H2/H4)")
    p.add_argument("--vae-encoder", default="positional", choices=["positional", "transformer"],
                   help="encoder of the grafted SentenceVAE (otherwise the authors' architecture): positional = "
                        "issue 19's order-preserving encoder, the recipes' choice (default); transformer = the authors'")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--prompt-tokens", type=int, default=64, metavar="N",
                   help="tokens per prompt, cut from real English text (default: 64)")
    p.add_argument("--sentence-len", type=int, default=None,
                   help="fixed SLLM sentence length (default: the measured mean segment length, rounded)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                   help="generation methods timed: HF generate, the lean cached loop, the grafted SentenceLLM "
                   "at every --layers depth (default: all three)")
    p.add_argument("--long-backbones", nargs="*", default=["opt-125m"], choices=list(ALL_BACKBONES),
                   metavar="NAME",
                   help="backbones for the long-context part (default: opt-125m; smollm2-135m needs a 34K-token document)")
    p.add_argument("--kv-tokens", nargs="+", type=int, default=[1024, 4096, 16384], metavar="N",
                   help="context lengths (tokens of real text) whose KV-cache bytes are measured (default: 1024 4096 16384)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weights and activations of backbone and SentenceVAE (default: float32; bfloat16 on a GPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "xformers"],
                   help="SentenceVAE attention backend (xformers only on CUDA)")
    p.add_argument("--peer-backbones", nargs="*", default=["smollm2-135m"], choices=list(ALL_BACKBONES),
                   metavar="NAME", help="backbones for the 'peers' part (default: smollm2-135m)")
    p.add_argument("--peer-modes", nargs="+", default=["greedy", "sampled"], choices=["greedy", "sampled"],
                   help="'peers' part: decoding modes (default: greedy sampled; sampled = temperature 0.8, top-p 0.95)")
    p.add_argument("--peer-sources", nargs="+", default=["pydoc", "kjv"], choices=["pydoc", "kjv"],
                   help="'peers' part: prompt texts: technical docs (pydoc) and prose (KJV) (default: both)")
    p.add_argument("--peer-tokens", type=int, default=128, metavar="N",
                   help="'peers' part: output tokens per prompt at batch 1 (default: 128)")
    p.add_argument("--peer-sentence-lens", nargs="*", type=int, default=None, metavar="L",
                   help="'peers' part: fixed sentence lengths of the SLLM-H1 rows (default: the measured mean)")
    p.add_argument("--draft-model", nargs="*", default=[], metavar="PATH",
                   help="'peers' part: draft models for HF assisted generation (local causal-LM folders or hub "
                   "ids sharing the backbone's tokenizer)")
    p.add_argument("--self-draft-layers", type=int, default=4, metavar="K",
                   help="'peers' part: probe the backbone's first K layers as its own draft (0: off; default 4)")
    p.add_argument("--trained", default=None, metavar="RUN",
                   help="'peers' part: a finished `graftlm demo` run folder whose SentenceLLM is timed as trained "
                   "(own sentence lengths, stop head on) beside its bits per byte; its backbone must be the one measured")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="soft time limit: once M minutes have passed, the remaining parts and backbones are "
                   "skipped (noted in the report) and the report is written (default: none)")


def _parse_tokens_for(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, sep, n = item.partition("=")
        if not sep or not n.isdigit() or name not in ALL_BACKBONES:
            raise ValueError(f"--tokens-for expects BACKBONE=N with BACKBONE in {list(ALL_BACKBONES)}, got {item!r}")
        out[name] = int(n)
    return out


def _parse_batch_tokens(items: list[str]) -> dict[int, int]:
    out = {}
    for item in items or []:
        b, sep, n = item.partition("=")
        if not sep or not b.isdigit() or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--batch-tokens expects BATCH=N with positive integers, got {item!r}")
        out[int(b)] = int(n)
    return out


def run(args: argparse.Namespace) -> int:
    if args.merge:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        merged = report.merge(args.merge)
        report.save_json(merged, out / "results.json")
        report.write_markdown(merged, out / "results.md")
        report.write_charts(merged, out)
        print(f"merged {len(args.merge)} runs into {out / 'results.md'}")
        return 0
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if args.device != "cpu":
        print("note: the CUDA path times the same code on the GPU", file=sys.stderr)
    try:
        tokens_for = _parse_tokens_for(args.tokens_for)
        batch_tokens = _parse_batch_tokens(args.batch_tokens)
        if "peers" in args.parts:
            check_peer_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.attention != "auto":
        set_attention_backend(args.attention)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    results: dict[str, Any] = {"machine": report.machine_info(), "settings": dict(
        threads=args.threads, dtype=args.dtype, device=args.device, batches=args.batches + ([32] if args.batch32 else []),
        new_tokens=args.new_tokens, tokens_for=tokens_for, batch_tokens=batch_tokens, repeats=args.repeats, prompt_tokens=args.prompt_tokens,
        greedy=True, attention=args.attention, layers=args.layers, methods=args.methods, parts=args.parts,
        vae_encoder=args.vae_encoder),
        "segments": [], "throughput": [], "peers": [], "breakdown": [], "kv": [], "long_context": [], "memory": [],
        "attention": [], "notes": []}
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    def save() -> None:
        report.save_json(results, out / "results.json")
        report.write_markdown(results, out / "results.md")

    deadline = None if args.max_minutes is None else t0 + 60 * args.max_minutes

    def over_time(what: str) -> bool:
        if deadline is None or time.time() < deadline:
            return False
        note = f"skipped {what}: the --max-minutes {args.max_minutes:g} limit was reached"
        results["notes"].append(note)
        log(note)
        return True

    failed: list[str] = []
    for name in args.backbones:
        if over_time(f"backbone {name}"):
            continue
        # Tensors made without an explicit device (random init of the backbone and of every
        # SentenceVAE, prompts) are made on the measured device: initialising a 1.3B model on
        # the host would cost more time than measuring it on a GPU.
        try:
            with torch.device(args.device):
                _measure_backbone(name, args, dtype, tokens_for, batch_tokens, results, log, save, over_time)
        except Exception as err:  # one backbone failing (a missing wheel, OOM) must not lose the others
            failed.append(name)
            results["notes"].append(f"{name} failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
            log(f"error: {results['notes'][-1]}")
            traceback.print_exc()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    results["machine"]["load_after"] = report.load_average()
    if not torch.cuda.is_available():
        results["notes"].append("No CUDA device: the CUDA paths (xformers vs SDPA, bf16) were not run.")
    save()
    charts = report.write_charts(results, out)
    log(f"wrote {out / 'results.md'}, {out / 'results.json'}, " + ", ".join(str(c) for c in charts))
    if failed:
        print(f"error: {len(failed)} backbone(s) failed: {', '.join(failed)} (see the notes in results.md)",
              file=sys.stderr)
        return 1
    return 0


def _sentence_len(name: str, bb: Any, args: argparse.Namespace, results: dict[str, Any], log) -> int:
    """--sentence-len, or the rounded mean segment length on pydoc (measured, and reported as the
    'segments' part); without 'segments' in --parts and with --sentence-len given, nothing is measured."""
    if args.sentence_len and "segments" not in args.parts:
        return args.sentence_len
    seg_rows = suite.measure_segments(name, bb.tokenizer, min_tokens=(None, 8, 16))
    results["segments"] += seg_rows
    default = next(r for r in seg_rows if r["segmenter"] == "default (semantic)" and r["source"] == "pydoc")
    sentence_len = args.sentence_len or max(1, round(default["mean"]))
    log(f"{name}: mean segment length {default['mean']:.2f} tokens (pydoc, default semantic rule) -> L={sentence_len}")
    return sentence_len


def _token_groups(name: str, batches: list[int], args: argparse.Namespace, tokens_for: dict[str, int],
                  batch_tokens: dict[int, int]) -> dict[int, tuple[int, ...]]:
    """Output tokens → the batch sizes measured with that many (one suite call per group, so the
    SentenceLLMs are built once per group, not once per batch size)."""
    groups: dict[int, list[int]] = {}
    for b in batches:
        n = min(tokens_for.get(name, args.new_tokens), batch_tokens.get(b, args.new_tokens))
        groups.setdefault(n, []).append(b)
    return {n: tuple(bs) for n, bs in groups.items()}


def _measure_backbone(name: str, args: argparse.Namespace, dtype: torch.dtype, tokens_for: dict[str, int],
                      batch_tokens: dict[int, int], results: dict[str, Any], log, save, over_time) -> None:
    log(f"building {name} ({args.dtype}, {args.device})")
    bb = dataclasses.replace(build_backbone(name, dtype=dtype), vae_encoder=args.vae_encoder)
    bb.model.to(args.device)
    if bb.note:
        results["notes"].append(bb.note)
        log(f"note: {bb.note}")
    sentence_len = _sentence_len(name, bb, args, results, log)
    if "throughput" in args.parts and not over_time(f"{name} throughput"):
        for n, batches in _token_groups(name, args.batches, args, tokens_for, batch_tokens).items():
            results["throughput"] += suite.throughput_rows(
                bb, batches=batches, new_tokens=n, sentence_len=sentence_len,
                vae_layers=tuple(args.layers), repeats=args.repeats, prompt_tokens=args.prompt_tokens,
                methods=tuple(args.methods), log=log)
            save()
        if args.batch32:
            results["throughput"] += suite.throughput_rows(
                bb, batches=(32,), new_tokens=args.batch32_tokens, sentence_len=sentence_len,
                vae_layers=tuple(args.layers), repeats=1, prompt_tokens=args.prompt_tokens,
                methods=tuple(args.methods), log=log)
            save()
    if "peers" in args.parts and name in args.peer_backbones and not over_time(f"{name} peers"):
        results.setdefault("peers", [])
        results["peers"] += measure_peers(bb, args, sentence_len, results, log)
        save()
    if "breakdown" in args.parts and "sllm" in args.methods and not over_time(f"{name} breakdown"):
        results["breakdown"] += suite.breakdown_rows(bb, sentence_len=sentence_len,
                                                     new_tokens=min(64, args.new_tokens), log=log)
        save()
    if "kv" in args.parts and not over_time(f"{name} kv"):
        sllm = _try_sllm(bb, log)
        results["kv"] += suite.kv_rows(bb, context_tokens=tuple(args.kv_tokens), sllm=sllm, log=log)
        del sllm
        save()
    if "memory" in args.parts and not over_time(f"{name} memory"):
        for n, batches in _token_groups(name, args.batches + ([32] if args.batch32 else []), args, tokens_for,
                                        batch_tokens).items():
            results.setdefault("memory", [])
            results["memory"] += peak_memory_rows(bb, batches=batches, new_tokens=n, sentence_len=sentence_len,
                                                  vae_layers=(min(args.layers),), prompt_tokens=args.prompt_tokens,
                                                  methods=tuple(args.methods), log=log)
        save()
    if "attention" in args.parts and not over_time(f"{name} attention"):
        results.setdefault("attention", [])
        results["attention"] += attention_rows(bb, sentence_len=sentence_len, batches=tuple(args.batches),
                                               new_tokens=min(tokens_for.get(name, args.new_tokens), args.new_tokens),
                                               prompt_tokens=args.prompt_tokens, repeats=args.repeats, log=log)
        save()
    if "long" in args.parts and name in args.long_backbones and not over_time(f"{name} long context"):
        results["long_context"] += long_context_rows(bb, log=log)
        save()
    del bb


def _try_sllm(bb: Any, log) -> Any:
    try:
        return suite.build_sllm(bb, 1)
    except ImportError as err:
        log(f"  no SentenceLLM ({err}): backbone rows only")
        return None
