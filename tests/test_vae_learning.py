"""The learning test: a tiny SentenceVAE memorises real English segments through its one vector.

Proof that encoder → one (B, h) vector → decoder learns end to end: after ~300 AdamW steps on 256
pydoc segments (8–32 bytes, byte tokens), greedy decoding of each segment's vector gives the
segment back exactly for ≥ 90 % of them (≈ 97 % measured). The held-out version is
``benchmarks/svae_reconstruction.py``.
"""

from __future__ import annotations

import random

import pytest
import torch

from graftlm.segmenter import RegexSegmenter
from graftlm.text import pydoc_topics_text
from graftlm.tokenization import ByteTokenizer
from graftlm.training.batching import length_buckets
from graftlm.training.evaluate import evaluate_svae
from graftlm.vae import SentenceVAE, SentenceVAEConfig

NUM_SEGMENTS, EPOCHS, LR = 256, 150, 4e-3


def pydoc_segments() -> list[str]:
    parts = RegexSegmenter(max_tokens=64).split(pydoc_topics_text()[:100_000])
    segments = sorted({p.strip() for p in parts if 8 <= len(p.strip().encode()) <= 32 and p.isascii()})
    random.Random(0).shuffle(segments)
    return segments[:NUM_SEGMENTS]


@pytest.mark.slow
def test_tiny_vae_reconstructs_real_segments_exactly():
    tok = ByteTokenizer()
    segments = pydoc_segments()
    assert len(segments) == NUM_SEGMENTS
    rows = [tok.encode(s) for s in segments]
    batches = length_buckets(rows, 128, tok.pad_token_id)

    torch.manual_seed(0)
    config = SentenceVAEConfig(vocab_size=tok.vocab_size, hidden_size=128, num_heads=4, num_layers=1, ffn_size=512,
                               loss="ce", pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id)
    model = SentenceVAE(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * len(batches), pct_start=0.1)
    order_rng = random.Random(0)
    for _ in range(EPOCHS):
        order = list(range(len(batches)))
        order_rng.shuffle(order)
        for i in order:
            loss = model(*batches[i]).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()

    report = evaluate_svae(model, rows, pad_id=tok.pad_token_id, batch_size=256, keep_generated=True)
    failures = [(s, tok.decode(g)) for s, g, r in zip(segments, report["generated"], rows) if g != r][:5]
    assert report["exact_match"] >= 0.90, f"exact match {report['exact_match']:.1%}; e.g. {failures}"
