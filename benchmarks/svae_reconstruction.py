"""Does a SentenceVAE generalise? Train on pydoc segments for a time budget, measure held-out ones.

    python benchmarks/svae_reconstruction.py --minutes 3

Segments come from Python's own ``pydoc_data.topics`` (cut with the paper's rule by
``RegexSegmenter``), tokenised as bytes; a hash split keeps held-out segments unseen. Prints
exact-match (greedy decode == input), teacher-forced token accuracy and PPL on the training and
held-out segments, and a few held-out examples.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from graftlm.segmenter import RegexSegmenter
from graftlm.text import pydoc_topics_text, train_heldout_split
from graftlm.tokenization import ByteTokenizer
from graftlm.training.batching import length_buckets
from graftlm.training.evaluate import evaluate_svae
from graftlm.vae import SentenceVAE, SentenceVAEConfig


def load_segments(max_bytes: int) -> list[str]:
    segments = RegexSegmenter(max_tokens=max_bytes).split(pydoc_topics_text())
    return sorted({s.strip() for s in segments if 4 <= len(s.strip().encode()) <= max_bytes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    parser.add_argument("--train-segments", type=int, default=20000)
    parser.add_argument("--heldout-segments", type=int, default=500)
    parser.add_argument("--max-bytes", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--preset", choices=["modern", "official"], default="modern")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = ByteTokenizer()
    train_text, heldout_text = train_heldout_split(load_segments(args.max_bytes), 0.05, seed=args.seed)
    rng = random.Random(args.seed)
    rng.shuffle(train_text)
    rng.shuffle(heldout_text)
    train_text, heldout_text = train_text[: args.train_segments], heldout_text[: args.heldout_segments]
    train_ids = [tok.encode(s) for s in train_text]
    heldout_ids = [tok.encode(s) for s in heldout_text]

    torch.manual_seed(args.seed)
    common = dict(vocab_size=tok.vocab_size, hidden_size=args.hidden, num_heads=args.heads, num_layers=args.layers,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, loss="ce")
    if args.preset == "modern":
        config = SentenceVAEConfig(**common)
    else:
        config = SentenceVAEConfig.official(**common, dropout=0.0)
    model = SentenceVAE(config)
    print(f"{args.preset} SentenceVAE, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
          f"{len(train_ids)} training / {len(heldout_ids)} held-out segments of ≤ {args.max_bytes} bytes")
    batches = length_buckets(train_ids, args.batch_size, tok.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    budget, start, step, epoch = args.minutes * 60, time.time(), 0, 0
    model.train()
    while time.time() - start < budget:
        order = list(range(len(batches)))
        rng.shuffle(order)
        for i in order:
            progress = min(1.0, (time.time() - start) / budget)
            for group in optimizer.param_groups:  # warm-up then linear decay over the time budget
                group["lr"] = args.lr * min(1.0, (step + 1) / 100) * max(0.05, 1.0 - progress)
            loss = model(*batches[i]).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step:6d}  epoch {epoch}  loss {loss.item():.4f}  {time.time() - start:6.0f} s", flush=True)
            if time.time() - start >= budget:
                break
        epoch += 1
    train_time = time.time() - start

    sample = train_ids[: len(heldout_ids)]
    for name, rows in (("train", sample), ("held-out", heldout_ids)):
        report = evaluate_svae(model, rows, pad_id=tok.pad_token_id, batch_size=256, keep_generated=True)
        print(f"{name:9s} exact-match {report['exact_match']:6.1%}  token accuracy {report['token_accuracy']:6.1%}  "
              f"PPL {report['ppl']:7.3f}  ({len(rows)} segments)")
    print(f"trained {step} steps ({epoch} epochs) in {train_time:.0f} s")
    for text, decoded in list(zip(heldout_text, report["generated"]))[:8]:
        mark = "==" if tok.encode(text) == decoded else "!="
        print(f"  {text!r}\n  {mark} {tok.decode(decoded)!r}")


if __name__ == "__main__":
    main()
