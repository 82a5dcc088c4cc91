"""Batched generation lays each row out contiguously (padding first, then prompt and new sentences):
on backbones whose state depends on key indices (MPT's ALiBi) or on every earlier input (Jamba's
Mamba layers) a row then generates in a batch exactly what it generates alone."""

from __future__ import annotations

import warnings

import pytest
import torch

from graftlm import graft
from graftlm.segmenter import SegmentedBatch
from graftlm.sllm.generation import left_align
from graftlm.vae import SentenceVAE, SentenceVAEConfig

from fixtures.tiny_archs import VOCAB, tiny_arch
from fixtures.tiny_models import one_thread  # noqa: F401

FIXED = dict(ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=3, max_new_sentences=3)


def _sllm(name: str):
    torch.manual_seed(1)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=VOCAB, hidden_size=32, num_heads=4, num_layers=1, max_tokens=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return graft(tiny_arch(name), vae).eval()


def _prompts(counts: list[int], left: bool = False) -> SegmentedBatch:
    g = torch.Generator().manual_seed(3)
    S, T = max(counts), 3
    ids = torch.randint(3, VOCAB, (len(counts), S, T), generator=g)
    n = torch.tensor(counts)[:, None]
    sm = torch.arange(S)[None] >= S - n if left else torch.arange(S)[None] < n
    tm = sm[..., None].expand(-1, -1, T).clone()
    return SegmentedBatch(ids * tm, tm, sm)


def test_left_align_moves_each_rows_sentences_to_the_end_in_order():
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    inputs = torch.arange(16.0).reshape(4, 4, 1) * mask[..., None] + 100 * ~mask[..., None]  # padding = 100
    moved, moved_mask = left_align(inputs, mask)
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(moved_mask, expected)
    assert moved[..., 0].tolist() == [[100, 100, 0, 1], [100, 100, 100, 4], [100, 100, 9, 10], [12, 13, 14, 15]]


@pytest.mark.parametrize("name", ["mpt", "jamba"])
@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_rows_generate_in_a_batch_what_they_generate_alone(name, left):
    sllm = _sllm(name)
    counts = [1, 4, 2]
    prompts = _prompts(counts, left)
    together = sllm.generate(prompts, return_dict=True, output_hidden_states=True, **FIXED)
    for b, n in enumerate(counts):
        real = prompts.sentence_mask[b]
        alone = SegmentedBatch(prompts.input_ids[b, real][None], prompts.token_mask[b, real][None],
                               torch.ones(1, n, dtype=torch.bool))
        out = sllm.generate(alone, return_dict=True, output_hidden_states=True, **FIXED)
        assert out.token_ids[0] == together.token_ids[b]
        assert torch.allclose(out.hidden_states[0], together.hidden_states[b], atol=1e-5)


@pytest.mark.parametrize("name", ["mpt", "jamba"])
def test_a_gap_between_sentences_would_change_their_states(name):
    """Why the layout matters: with padding *between* sentences (the old layout: a short prompt's
    padding, then its new sentence) these backbones compute different states."""
    sllm = _sllm(name)
    x = torch.randn(1, 3, sllm.body_hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        contiguous, _ = sllm.run_body(x, torch.ones(1, 3, dtype=torch.bool), torch.arange(3)[None])
        gapped_x = torch.cat([x[:, :1], torch.zeros_like(x[:, :2]), x[:, 1:]], 1)
        mask = torch.tensor([[True, False, False, True, True]])
        gapped, _ = sllm.run_body(gapped_x, mask, torch.tensor([[0, 0, 0, 1, 2]]))
    assert torch.allclose(gapped[0, 0], contiguous[0, 0], atol=1e-5)
    assert (gapped[0, 3:] - contiguous[0, 1:]).abs().max() > 1e-5  # jamba: ~1e-4, mpt: ~1e-1
