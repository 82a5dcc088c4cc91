"""Measurements that matter most on a GPU: peak memory of each generation method, and xformers
vs SDPA for the SentenceVAE decoder (speed, numerical agreement, what ``auto`` picks).

Both run on a CPU too (peak RSS instead of ``torch.cuda.max_memory_allocated``; SDPA alone, with a
row saying why xformers was not measured), so the dry run of ``scripts/gpu-check.sh`` executes the
same code as the GPU run. Rows are plain dicts, like the rest of `graftlm.bench`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from graftlm import attention as attn
from graftlm.attention import attention_backend
from graftlm.bench import suite
from graftlm.bench.corpus import text_with_tokens
from graftlm.bench.models import Backbone
from graftlm.evaluation.memory import track_peak_memory
from graftlm.evaluation.throughput import (
    hf_generate_runner,
    lean_loop_runner,
    model_device,
    prompt_batch,
    sllm_runner,
    time_interleaved,
)

Log = Callable[[str], None]


def _suite():
    # Imported late: the shared measurement code may move out of graftlm.bench.suite.

    return suite


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of ``model`` (shared storages counted once)."""
    seen: set[int] = set()
    total = 0
    for t in (*model.parameters(), *model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def measure_peak(run: Callable[[], int], device: torch.device) -> dict[str, Any]:
    """Run ``run()`` once and return its peak memory: on CUDA ``max_memory_allocated`` (bytes the
    caching allocator handed out, weights included) and the part above what was allocated before;
    on a CPU the peak-RSS increase (an upper bound: freed pages are not always returned)."""
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    with track_peak_memory(device) as peak:
        tokens = run()
    if device.type == "cuda":
        return dict(tokens=tokens, measure="cuda max_memory_allocated", peak_bytes=peak.cuda_peak,
                    allocated_before=before, working_bytes=peak.cuda_peak - before)
    return dict(tokens=tokens, measure="peak RSS increase" + (" (lifetime peak)" if peak.rss_is_lifetime else ""),
                peak_bytes=peak.peak_rss, allocated_before=peak.rss_before, working_bytes=peak.rss_increase)


def peak_memory_rows(backbone: Backbone, *, batches: tuple[int, ...], new_tokens: int, sentence_len: int,
                     vae_layers: tuple[int, ...] = (1,), prompt_tokens: int = 64,
                     methods: tuple[str, ...] = ("hf_generate", "lean_loop", "sllm"),
                     log: Log = print) -> list[dict[str, Any]]:
    """One generation per (batch, method), exactly ``new_tokens`` per prompt, with its peak memory.

    Each method runs once untimed first, so allocator warm-up and lazy initialisation are not
    counted; the SLLM rows include the SentenceVAE's own weights (``weights_bytes``).
    """
    suite = _suite()
    tok = backbone.tokenizer
    device = model_device(backbone.model)
    _, ids = text_with_tokens(tok, max(batches) * prompt_tokens)
    sllms = {h: suite.build_sllm(backbone, h) for h in vae_layers} if "sllm" in methods else {}
    base_weights = weight_bytes(backbone.model)
    rows: list[dict[str, Any]] = []
    for b in batches:
        x = prompt_batch(ids, b, prompt_tokens)
        runners: dict[str, tuple[Callable[[], int], int]] = {}
        if "hf_generate" in methods:
            runners["hf_generate"] = (hf_generate_runner(backbone.model, x, new_tokens), base_weights)
        if "lean_loop" in methods:
            runners["lean_loop"] = (lean_loop_runner(backbone.model, x, new_tokens), base_weights)
        for h, sllm in sllms.items():
            prompts = suite.prompt_segments(tok, x, sllm.vae.config, sentence_len)
            runners[f"sllm-H{h}"] = (sllm_runner(sllm, prompts, new_tokens, sentence_len),
                                     base_weights + weight_bytes(sllm.vae))
        for method, (run, weights) in runners.items():
            run()  # warm-up
            m = measure_peak(run, device)
            rows.append(dict(backbone=backbone.name, batch=b, method=method, new_tokens=new_tokens,
                             device=str(device), dtype=str(next(backbone.model.parameters()).dtype).replace("torch.", ""),
                             weights_bytes=weights, **m))
            log(f"  {backbone.name} b={b} {method}: peak {m['peak_bytes'] / 2**20:.1f} MiB "
                f"({m['measure']}), {m['working_bytes'] / 2**20:.1f} MiB above the start")
    return rows


def xformers_status(device: torch.device) -> str | None:
    """None when xformers can be tried on ``device``, else the reason it cannot."""
    if attn._xformers_ops() is None:
        return "xformers is not installed (or lacks memory_efficient_attention): pip install 'graftlm[cuda]'"
    if device.type != "cuda":
        return f"xformers needs CUDA tensors; this run is on {device}"
    return None


@contextlib.contextmanager
def _backend(name: str):
    with attention_backend(name):
        yield


def _with_backend(name: str, run: Callable[[], int]) -> Callable[[], int]:
    def wrapped() -> int:
        with _backend(name):
            return run()
    return wrapped


@torch.inference_mode()
def decoder_agreement(sllm: Any, prompts: Any) -> dict[str, Any]:
    """Teacher-forced decoder logits on real sentences (``prompts``' segments), SDPA vs xformers:
    max |Δ| / max |logit| and the share of positions whose argmax agrees."""
    sm = prompts.sentence_mask.bool()
    ids = prompts.input_ids[sm].to(sllm.device)
    mask = prompts.token_mask[sm].to(sllm.device)
    with _backend("sdpa"):
        vectors = sllm.vae.encode(ids, mask)
        ref = sllm.vae.decode_logits(vectors, ids, mask).float()
    with _backend("xformers"):
        out = sllm.vae.decode_logits(vectors, ids, mask).float()
    valid = torch.nn.functional.pad(mask.bool(), (0, 1), value=True)  # + the eos position
    diff = (out - ref).abs()[valid]
    return dict(max_abs_diff=float(diff.max()), rel_diff=float(diff.max() / ref[valid].abs().max().clamp_min(1e-12)),
                argmax_agree=float((out.argmax(-1) == ref.argmax(-1))[valid].float().mean()),
                sentences=int(ids.shape[0]))


def attention_rows(backbone: Backbone, *, sentence_len: int, batches: tuple[int, ...] = (1, 8),
                   new_tokens: int = 64, layers: int = 1, prompt_tokens: int = 64, repeats: int = 3,
                   log: Log = print) -> list[dict[str, Any]]:
    """SLLM-H``layers`` generation with the SentenceVAE on SDPA vs xformers (interleaved timing),
    the decoder's numerical agreement on the prompts' real sentences, and the backend that
    ``auto`` resolved to after a real call. Without a usable xformers, SDPA rows and a note."""
    suite = _suite()
    tok = backbone.tokenizer
    device = model_device(backbone.model)
    sllm = suite.build_sllm(backbone, layers)
    _, ids = text_with_tokens(tok, max(batches) * prompt_tokens)
    reason = xformers_status(device)
    rows: list[dict[str, Any]] = []
    for b in batches:
        prompts = suite.prompt_segments(tok, prompt_batch(ids, b, prompt_tokens), sllm.vae.config, sentence_len)
        short = min(new_tokens, 2 * sentence_len)
        runners = {name: (_with_backend(name, sllm_runner(sllm, prompts, new_tokens, sentence_len)),
                          _with_backend(name, sllm_runner(sllm, prompts, short, sentence_len)))
                   for name in (("sdpa",) if reason else ("sdpa", "xformers"))}
        agreement: dict[str, Any] = {}
        if not reason:
            try:  # forced xformers on these inputs: a failure is a result to report, not a crash
                runners["xformers"][1]()
                agreement = decoder_agreement(sllm, prompts)
            except Exception as err:  # NotImplementedError "No operator found", CUDA errors, ...
                reason = f"forced xformers failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
                del runners["xformers"]
        backends = tuple(runners)
        timings = time_interleaved(runners, repeats=repeats)
        attn._xformers_verdicts.clear()
        with _backend("auto"):  # one real call under auto: its trials record the verdicts
            sllm_runner(sllm, prompts, short, sentence_len)()
        verdicts = {f"{k[1]}/{k[3]}".replace("torch.", ""): v for k, v in attn._xformers_verdicts.items()}
        auto = "xformers" if verdicts and all(verdicts.values()) else ("mixed" if any(verdicts.values()) else "sdpa")
        for name in backends:
            t = timings[name]
            row = dict(backbone=backbone.name, method=f"sllm-H{layers}", batch=b, backend=name, new_tokens=new_tokens,
                       device=str(device), tokens_per_s=t.tokens_per_s, seconds=t.seconds, spread=t.spread,
                       auto_picks=auto, auto_verdicts=verdicts)
            if name == "xformers":
                row["vs_sdpa"] = timings["sdpa"].median / t.median
                row.update(agreement)
            rows.append(row)
            log(f"  {backbone.name} H{layers} b={b} {name}: {t.tokens_per_s:.1f} tok/s"
                + (f" (×{row['vs_sdpa']:.2f} SDPA; decoder logits max|Δ| {agreement['max_abs_diff']:.3g}, "
                   f"argmax agree {100 * agreement['argmax_agree']:.1f}%)" if name == "xformers" else "")
                + f"; auto picks {auto}")
        if reason:
            rows.append(dict(backbone=backbone.name, method=f"sllm-H{layers}", batch=b, backend="xformers",
                             device=str(device), note=f"not measured: {reason}"))
            log(f"  xformers not measured: {reason}")
    return rows
