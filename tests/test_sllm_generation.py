"""Sentence-level generation: cached steps == full recompute, batching/padding invariance,
limits, stop rule, streaming, bad prompts."""

from __future__ import annotations

import pytest
import torch

from graftlm import graft
from graftlm.segmenter import SegmentedBatch
from graftlm.tokenization import ByteTokenizer

from fixtures.tiny_models import BACKBONES, TEXTS, continued_batch, one_thread, paragraphs_batch, tiny_vae  # noqa: F401

FIXED = dict(ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=5)  # deterministic lengths


def _sllm(name: str = "opt", vae_hidden: int = 24):
    return graft(BACKBONES[name](), tiny_vae(hidden=vae_hidden), tokenizer=ByteTokenizer()).eval()


def _left_padded(batch: SegmentedBatch) -> SegmentedBatch:
    """The same prompts with each row's sentences moved to the end (padding on the left)."""
    ids, tm, sm = batch.input_ids.clone(), batch.token_mask.clone(), batch.sentence_mask.clone()
    for b in range(sm.shape[0]):
        shift = int((~sm[b]).sum())
        ids[b], tm[b], sm[b] = ids[b].roll(shift, 0), tm[b].roll(shift, 0), sm[b].roll(shift, 0)
    return SegmentedBatch(ids, tm, sm, batch.segments)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_cached_generation_equals_full_recompute(name):
    sllm = _sllm(name)
    prompts = paragraphs_batch(TEXTS)
    out = sllm.generate(prompts, max_new_sentences=3, return_dict=True, output_hidden_states=True, **FIXED)
    assert out.num_new_sentences == [3, 3, 3]
    # rebuild every paragraph = prompt sentences + generated sentences, run the training forward
    B = len(TEXTS)
    ids, tm, sm, counts = continued_batch(prompts, out.token_ids, max(prompts.input_ids.shape[2], 5))
    with torch.no_grad():
        full = sllm(ids, tm, sm).hidden_states
    for b in range(B):
        n = counts[b]
        expected = full[b, n - 1 : n + 3]  # last prompt position, then one per generated sentence
        assert torch.allclose(out.hidden_states[b], expected, atol=1e-5)


def test_batch_and_padding_side_do_not_change_greedy_output():
    sllm = _sllm("llama")
    prompts = paragraphs_batch(TEXTS)
    together = sllm.generate(prompts, max_new_sentences=2, return_dict=True, **FIXED).token_ids
    left = sllm.generate(_left_padded(prompts), max_new_sentences=2, return_dict=True, **FIXED).token_ids
    assert left == together
    for b, text in enumerate(TEXTS):
        alone = sllm.generate(paragraphs_batch([text]), max_new_sentences=2, return_dict=True, **FIXED).token_ids
        assert alone[0] == together[b]


def test_text_prompts_return_text_of_new_sentences():
    sllm = _sllm()
    texts = sllm.generate(["The cat sat. It purred.", "Rain fell."], max_new_sentences=2, **FIXED)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    out = sllm.generate(["The cat sat. It purred.", "Rain fell."], max_new_sentences=2, return_dict=True, **FIXED)
    assert out.texts == texts and out.num_new_tokens == [10, 10]
    assert out.texts[0] == "".join(out.segments[0])


def test_stream_yields_the_same_segments_as_generate():
    sllm = _sllm()
    full = sllm.generate(TEXTS, max_new_sentences=3, return_dict=True, **FIXED)
    steps = list(sllm.stream(TEXTS, max_new_sentences=3, **FIXED))
    assert len(steps) == 3
    for b in range(len(TEXTS)):
        assert [step[b] for step in steps] == full.segments[b]


def test_max_new_tokens_cuts_each_row():
    sllm = _sllm()
    out = sllm.generate(TEXTS, max_new_tokens=7, return_dict=True, **FIXED)
    assert out.num_new_tokens == [7, 7, 7]
    assert [[len(s) for s in rows] for rows in out.token_ids] == [[5, 2]] * 3


def test_max_sentences_counts_prompt_and_new_sentences():
    sllm = _sllm()
    prompts = paragraphs_batch(TEXTS)
    counts = prompts.sentence_mask.sum(1).tolist()
    limit = max(counts) + 1
    out = sllm.generate(prompts, max_sentences=limit, return_dict=True, **FIXED)
    assert out.num_new_sentences == [limit - c for c in counts]


def test_termination_head_stops_rows():
    sllm = _sllm()
    with torch.no_grad():
        sllm.termination_head.weight.zero_()
        sllm.termination_head.bias.copy_(torch.tensor([10.0, 0.0]))  # always "stop"
    out = sllm.generate(TEXTS, max_new_sentences=3, ignore_eos=True, max_tokens_per_sentence=4, return_dict=True)
    assert out.num_new_sentences == [0, 0, 0] and out.texts == ["", "", ""]
    with torch.no_grad():
        sllm.termination_head.bias.copy_(torch.tensor([0.0, 10.0]))  # always "continue"
    out = sllm.generate(TEXTS, max_new_sentences=3, ignore_eos=True, max_tokens_per_sentence=4, return_dict=True)
    assert out.num_new_sentences == [3, 3, 3]


def test_seeded_sampling_is_reproducible():
    sllm = _sllm()
    runs = [
        sllm.generate(TEXTS, max_new_sentences=2, do_sample=True, top_k=20, generator=torch.Generator().manual_seed(5),
                      return_dict=True, **FIXED).token_ids
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "prompts, kwargs, error, match",
    [
        ("", {}, ValueError, "empty"),
        (["A cat.", "   "], {}, ValueError, "prompt 1 is empty"),
        ([], {}, ValueError, "no prompts"),
        ("One. Two. Three. Four.", dict(max_sentences=2), ValueError, "more than max_sentences=2"),
        ("A cat.", dict(max_sentences=1000), ValueError, "exceeds the backbone"),
        ("A cat.", dict(beam_width=3), TypeError, "unknown generation option"),
        ("A cat.", dict(max_tokens_per_sentence=0), ValueError, "max_tokens_per_sentence"),
        ("A cat.", dict(max_new_tokens=0), ValueError, "max_new_tokens"),
        ("A cat.", dict(max_new_sentences=-1), ValueError, "max_new_sentences"),
    ],
)
def test_bad_prompts_and_options(prompts, kwargs, error, match):
    with pytest.raises(error, match=match):
        _sllm().generate(prompts, **kwargs)


def test_text_prompt_without_tokenizer_is_refused():
    sllm = graft(BACKBONES["opt"](), tiny_vae())
    with pytest.raises(ValueError, match="need a tokenizer"):
        sllm.generate("A cat sat.")
    with pytest.raises(ValueError, match="return_dict=True"):
        sllm.generate(paragraphs_batch(["A cat sat."]), max_new_sentences=1)
    assert sllm.generate(paragraphs_batch(["A cat sat."]), max_new_sentences=1, return_dict=True, **FIXED).token_ids[0]
