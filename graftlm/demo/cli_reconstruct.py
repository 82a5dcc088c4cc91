"""``graftlm reconstruct RUN "sentence"``: encode each segment of the text into one vector with the
run's SentenceVAE and decode it back (greedy), like the paper's SVAE demo."""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoTokenizer

from graftlm.demo.run_folder import RunFolder
from graftlm.segmenter import RegexSegmenter, segment_and_tokenize
from graftlm.vae import SentenceVAE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder written by `graftlm demo`")
    parser.add_argument("text", help="a sentence (longer text is segmented first)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def reconstruct(run_dir: str, text: str) -> list[tuple[str, str, bool]]:
    """(segment, reconstruction, exact) for every segment of ``text``."""
    if not text.strip():
        raise ValueError("the text is empty: give a sentence to reconstruct")
    run = RunFolder.open(run_dir)
    run.require_trained("svae")
    if not run.tokenizer_dir.is_dir():
        raise ValueError(f"{run.tokenizer_dir} is missing: the run folder is incomplete")
    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer_dir))
    vae = SentenceVAE.from_pretrained(run.vae_dir).eval()
    segmenter = RegexSegmenter(max_tokens=int(run.state["settings"]["max_tokens"]), tokenizer=tokenizer)
    batch = segment_and_tokenize([text], tokenizer, segmenter, pad_token_id=vae.config.pad_token_id)
    sm = batch.sentence_mask[0]
    ids, mask = batch.input_ids[0][sm], batch.token_mask[0][sm]
    with torch.inference_mode():
        out = vae.generate(vae.encode(ids, mask), max_new_tokens=int(mask.sum(1).max()) + 8)
    rows = []
    for seg, row, m, gen in zip(batch.segments[0], ids.tolist(), mask.tolist(), out):
        target = [t for t, keep in zip(row, m) if keep]
        rows.append((seg, tokenizer.decode(gen), list(gen) == target))
    return rows


def run(args: argparse.Namespace) -> int:
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        rows = reconstruct(args.run_dir, args.text)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for seg, out, exact in rows:
        print(f"in : {seg!r}\nout: {out!r}  [{'exact' if exact else 'differs'}]")
    print(f"{sum(e for *_, e in rows)}/{len(rows)} segments reconstructed exactly")
    return 0
