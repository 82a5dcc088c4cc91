"""Training throughput: graftlm vs the authors' SentenceVAE code, same CPU, same segments.

    python scripts/authors_throughput.py --authors PATH/TO/SentenceVAE --authors-python PY [--threads 1]

PATH is a checkout of github.com/BestAnHongjun/SentenceVAE (MIT; never copied into this
repository); PY is a Python that can import it: torch, mmengine and a transformers of their time
(< 4.45: their SentenceLLM calls OPT's decoder layers positionally), e.g. a venv with
`pip install "transformers==4.44.2" mmengine`. Both sides train an OPT-125M-sized model with
random weights (fp32, AdamW, grad-norm clip 1, every parameter trainable, dropout 0.1, as their
configs) on the same segments of Python's docs cut by the paper's rule with the GPT-2 BPE:

* SentenceVAE-768-H1: a batch of segments per optimizer step; theirs padded to their collate's
  fixed 64 tokens (`SentenceCollate(fix_len=True)`, what their training does), ours to the batch's
  longest segment;
* SentenceLLM-125M-H1: paragraphs; theirs one per step, padded to 64 sentences x 64 tokens
  (`PassageCollate`, their config's batch size 1); ours at batch 1 and at --sllm-batch.

Prints segments/s, paragraphs/s and seconds per optimizer step (median of --steps timed steps
after one warm-up). The two sides run in separate processes (their transformers is older); the
data passes as JSON token ids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEG_LEN = 64  # their max_seq_len / max_sen_len
SENTENCES = 64  # their max_sen_num
H, HEADS, VOCAB, PAD, BOS, EOS = 768, 12, 50272, 1, 2, 2


def make_data(n_segments: int, n_paragraphs: int, max_sentences: int) -> dict:
    from graftlm.bench.corpus import english_text
    from graftlm.bench.models import gpt2_tokenizer
    from graftlm.segmenter import RegexSegmenter

    tok = gpt2_tokenizer()
    seg = RegexSegmenter.paper(max_tokens=SEG_LEN, tokenizer=tok)
    paragraphs, segments = [], []
    for para in english_text("pydoc").split("\n\n"):
        parts = [p for p in seg.split(para) if p.strip()]
        ids = [tok(p, add_special_tokens=False)["input_ids"][:SEG_LEN] for p in parts]
        ids = [x for x in ids if x]
        segments += ids
        if 2 <= len(ids) and len(paragraphs) < n_paragraphs:
            paragraphs.append(ids[:max_sentences])
        if len(segments) >= n_segments and len(paragraphs) >= n_paragraphs:
            break
    return {"segments": segments[:n_segments], "paragraphs": paragraphs}


def _median_step(step, batches: list, steps: int) -> list[float]:
    """[wall, CPU] seconds per step, medians (CPU time: robust to other processes on a shared machine)."""
    step(batches[0])  # warm-up
    wall, cpu = [], []
    for i in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        step(batches[(i + 1) % len(batches)])
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return [statistics.median(wall), statistics.median(cpu)]


def _optim_step(model, loss, opt) -> None:
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _pad(rows: list[list[int]], width: int):
    import torch

    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def ours(data: dict, args: argparse.Namespace) -> dict:
    import torch

    from graftlm import graft
    from graftlm.bench.models import build_backbone
    from graftlm.bench.suite import vae_config
    from graftlm.segmenter import pad_paragraphs
    from graftlm.vae import SentenceVAE

    torch.manual_seed(0)
    bb = build_backbone("opt-125m")
    cfg = vae_config(bb, 1)
    cfg.dropout = 0.1
    vae = SentenceVAE(cfg).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-6, weight_decay=0.01)
    segs = data["segments"]
    svae_batches = [segs[i: i + args.svae_batch] for i in range(0, len(segs), args.svae_batch)]

    def svae_step(rows):
        ids, mask = _pad(rows, max(map(len, rows)))
        _optim_step(vae, vae(ids, mask.bool()).loss, opt)

    out = {"svae_step_s": _median_step(svae_step, svae_batches, args.steps), "svae_batch": args.svae_batch}
    del vae, opt
    bb.model.train()
    sllm = graft(bb.model, SentenceVAE(cfg)).train()
    opt = torch.optim.AdamW([p for p in sllm.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.01)

    def sllm_step(paras):
        ids, tm, sm = pad_paragraphs(paras, PAD)
        _optim_step(sllm, sllm(ids, tm, sm).loss, opt)

    paras = data["paragraphs"]
    for b in sorted({1, args.sllm_batch}):
        batches = [paras[i: i + b] for i in range(0, len(paras) - b + 1, b)]
        out[f"sllm_step_s_b{b}"] = _median_step(sllm_step, batches, args.steps)
    return out


def theirs(data: dict, args: argparse.Namespace) -> dict:
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    sys.path.insert(0, str(Path(args.authors).resolve()))
    from sentence_vae.models import SentenceLLM, SentenceVAE  # their code, from their checkout

    dev, dt = torch.device("cpu"), torch.float32
    torch.manual_seed(0)
    vae = SentenceVAE(hidden_size=H, vocab_size=VOCAB, device=dev, dtype=dt, learnable_add=False,
                      num_attention_heads=HEADS, num_hidden_layers=1, max_seq_len=SEG_LEN, dropout=0.1,
                      bos_id=BOS, pad_id=PAD, end_id=EOS).to(dt).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-6, weight_decay=0.01)
    segs = data["segments"]
    svae_batches = [segs[i: i + args.svae_batch] for i in range(0, len(segs), args.svae_batch)]

    def svae_step(rows):
        ids, mask = _pad(rows, SEG_LEN)  # their SentenceCollate(fix_len=True)
        _optim_step(vae, vae(ids, mask)["total_loss"], opt)

    out = {"svae_step_s": _median_step(svae_step, svae_batches, args.steps), "svae_batch": args.svae_batch}
    del vae, opt
    with tempfile.TemporaryDirectory() as folder:
        OPTForCausalLM(OPTConfig(vocab_size=VOCAB, hidden_size=H, num_hidden_layers=12, ffn_dim=3072,
                                 num_attention_heads=HEADS, word_embed_proj_dim=H, do_layer_norm_before=True,
                                 pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)).save_pretrained(folder)
        sllm = SentenceLLM(svae_hidden_size=H, svae_vocab_size=VOCAB, svae_num_attention_heads=HEADS,
                           svae_num_hidden_layers=1, llm_ref_model_dir=folder, llm_ref_model_dtype=dt,
                           max_sentence_len=SEG_LEN, max_sentence_num=SENTENCES, dropout=0.1,
                           bos_id=BOS, pad_id=PAD, end_id=EOS, device=dev, dtype=dt).train()
    opt = torch.optim.AdamW([p for p in sllm.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.01)

    def sllm_step(paras):
        (para,) = paras  # their PassageCollate: (1, 64 sentences, 64 tokens)
        toks = torch.full((1, SENTENCES, SEG_LEN), PAD, dtype=torch.long)
        tmask = torch.zeros(1, SENTENCES, SEG_LEN, dtype=torch.long)
        smask = torch.zeros(1, SENTENCES, dtype=torch.long)
        for s, row in enumerate(para):
            toks[0, s, : len(row)] = torch.tensor(row)
            tmask[0, s, : len(row)] = 1
            smask[0, s] = 1
        losses = sllm(smask, toks, tmask)
        _optim_step(sllm, sum(losses.values()), opt)

    out["sllm_step_s_b1"] = _median_step(sllm_step, [[p] for p in data["paragraphs"]], args.steps)
    return out


def report(res: dict, data: dict, args: argparse.Namespace) -> str:
    n_sent = statistics.mean(len(p) for p in data["paragraphs"])
    b, k = args.svae_batch, args.sllm_batch
    lines = [f"threads {args.threads}, {args.steps} timed steps (median), {len(data['segments'])} segments "
             f"(mean {statistics.mean(map(len, data['segments'])):.1f} tokens), {len(data['paragraphs'])} paragraphs "
             f"(mean {n_sent:.1f} sentences), load average now {os.getloadavg()[0]:.2f}; "
             "each cell: per second of wall clock / of process CPU time",
             f"| side | SentenceVAE segments/s (batch {b}) | SentenceVAE s/step | SentenceLLM paragraphs/s (batch 1) "
             f"| SentenceLLM s/step (batch 1) | SentenceLLM paragraphs/s (batch {k}) | s/step (batch {k}) |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def cells(step: list[float] | None, n: int) -> list[str]:
        if not step:
            return ["–", "–"]
        return [f"{n / step[0]:.2f} / {n / step[1]:.2f}", f"{step[0]:.2f} / {step[1]:.2f}"]

    for side in ("authors", "graftlm"):
        r = res[side]
        row = cells(r["svae_step_s"], b) + cells(r["sllm_step_s_b1"], 1) + cells(r.get(f"sllm_step_s_b{k}"), k)
        lines.append(f"| {side} | " + " | ".join(row) + " |")
    a, g = res["authors"], res["graftlm"]
    lines.append("graftlm ÷ authors (wall / CPU time): SentenceVAE segments/s "
                 f"×{a['svae_step_s'][0] / g['svae_step_s'][0]:.2f} / ×{a['svae_step_s'][1] / g['svae_step_s'][1]:.2f}, "
                 f"SentenceLLM paragraphs/s at batch 1 ×{a['sllm_step_s_b1'][0] / g['sllm_step_s_b1'][0]:.2f} / "
                 f"×{a['sllm_step_s_b1'][1] / g['sllm_step_s_b1'][1]:.2f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors", required=True, help="checkout of BestAnHongjun/SentenceVAE")
    p.add_argument("--authors-python", default=sys.executable, help="Python that imports their code (mmengine, transformers < 4.45)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per measurement (default 3)")
    p.add_argument("--svae-batch", type=int, default=32)
    p.add_argument("--sllm-batch", type=int, default=4)
    p.add_argument("--max-sentences", type=int, default=16, help="sentences per paragraph at most (default 16)")
    p.add_argument("--side", choices=["authors", "graftlm"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not (Path(args.authors) / "sentence_vae" / "models" / "sentence_llm_model.py").is_file():
        print(f"error: {args.authors} is not a checkout of BestAnHongjun/SentenceVAE (no sentence_vae/models)", file=sys.stderr)
        return 2
    if min(args.threads, args.steps, args.svae_batch, args.sllm_batch, args.max_sentences) < 1:
        print("error: --threads, --steps, --svae-batch, --sllm-batch and --max-sentences must be >= 1", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    if args.side:  # a child process: one side, result as JSON on the last stdout line
        data = json.loads(Path(args.data).read_text())
        print(json.dumps((theirs if args.side == "authors" else ours)(data, args)))
        return 0
    data = make_data(args.svae_batch * (args.steps + 1), args.sllm_batch * (args.steps + 1), args.max_sentences)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.json"
        path.write_text(json.dumps(data))
        for side, py in (("authors", args.authors_python), ("graftlm", sys.executable)):
            cmd = [py, __file__, "--authors", args.authors, "--threads", str(args.threads), "--steps", str(args.steps),
                   "--svae-batch", str(args.svae_batch), "--sllm-batch", str(args.sllm_batch), "--side", side, "--data", str(path)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"error: the {side} side failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            res[side] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{side}: {res[side]}", flush=True)
    print(report(res, data, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
