"""Repetition control: ``no_repeat_sentence`` and ``repetition_penalty`` in the sentence decoder,
SentenceLLM.generate / stream and the CLI's options."""

from __future__ import annotations

import argparse

import pytest
import torch

from graftlm import graft
from graftlm.tokenization import ByteTokenizer
from graftlm.vae import SentenceVAE, SentenceVAEConfig
from graftlm.vae.generation import apply_repetition_penalty

from fixtures.tiny_models import BACKBONES, TEXTS, paragraphs_batch, tiny_vae  # noqa: F401

OPTS = dict(ignore_stop=True, max_tokens_per_sentence=5, max_new_sentences=6)


@pytest.fixture(scope="module")
def sllm():
    return graft(BACKBONES["llama"](), tiny_vae(hidden=24), tokenizer=ByteTokenizer()).eval()


def _vae() -> SentenceVAE:
    torch.manual_seed(0)
    return SentenceVAE(SentenceVAEConfig(vocab_size=40, hidden_size=32, num_heads=4, init_std=0.3)).eval()


def test_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -2.0, 3.0]])
    seen = torch.tensor([[True, True, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 3.0]]


def test_banned_sentence_is_never_produced_and_other_rows_are_unchanged(rng):
    vae = _vae()
    v = torch.randn(3, 32, generator=rng) * 3
    plain = vae.generate(v, 6)
    banned = [[plain[0]], [], [[1, 2, 3]]]
    out = vae.generate(v, 6, banned_sentences=banned)
    assert out[0] != plain[0] and out[0][: len(plain[0])] != plain[0]
    assert out[1:] == plain[1:]


def test_a_banned_sentence_loses_its_last_token_so_no_sentence_starts_with_it(rng):
    vae = _vae()
    v = torch.randn(2, 32, generator=rng) * 3
    plain = vae.generate(v, 4, ignore_eos=True)
    out = vae.generate(v, 4, ignore_eos=True, banned_sentences=[[plain[0]], []])
    assert out[0][:3] == plain[0][:3] and out[0][3] != plain[0][3]
    assert out[1] == plain[1]


def test_no_repeat_sentence_leaves_no_row_with_a_repeated_sentence(sllm):
    plain = sllm.generate(TEXTS, return_dict=True, **OPTS).token_ids
    assert any(len({tuple(s) for s in rows}) < len(rows) for rows in plain)  # the untreated model loops
    prompts = paragraphs_batch(TEXTS)
    out = sllm.generate(prompts, return_dict=True, no_repeat_sentence=True, **OPTS).token_ids
    for b, rows in enumerate(out):
        real = prompts.token_mask[b] & prompts.sentence_mask[b][:, None]
        had = {tuple(prompts.input_ids[b, s][real[s]].tolist()) for s in range(real.shape[0]) if real[s].any()}
        for s in rows:
            assert tuple(s) not in had
            had.add(tuple(s))


def test_a_repeat_in_another_spelling_is_a_repeat_too(sllm):
    """Equal text up to whitespace and case counts, whatever the token ids: no row's texts repeat."""
    out = sllm.generate(TEXTS, return_dict=True, no_repeat_sentence=True, **OPTS)
    for b, rows in enumerate(out.segments):
        prompt = {" ".join(s.split()).lower() for s in sllm.segmenter(ByteTokenizer()).split(TEXTS[b].rstrip())}
        keys = [" ".join(s.split()).lower() for s in rows]
        assert len(set(keys)) == len(keys) and not set(keys) & prompt


def test_no_repeat_sentence_batch_equals_alone(sllm):
    together = sllm.generate(TEXTS, return_dict=True, no_repeat_sentence=True, **OPTS).token_ids
    for b, text in enumerate(TEXTS):
        assert sllm.generate([text], return_dict=True, no_repeat_sentence=True, **OPTS).token_ids[0] == together[b]


def test_repetition_penalty_changes_greedy_output_and_stream_matches_generate(sllm):
    plain = sllm.generate(TEXTS, return_dict=True, **OPTS).token_ids
    full = sllm.generate(TEXTS, return_dict=True, repetition_penalty=1.5, **OPTS)
    assert full.token_ids != plain
    steps = list(sllm.stream(TEXTS, repetition_penalty=1.5, no_repeat_sentence=True, **OPTS))
    again = sllm.generate(TEXTS, return_dict=True, repetition_penalty=1.5, no_repeat_sentence=True, **OPTS)
    for b in range(len(TEXTS)):
        assert [step[b] for step in steps if step[b] is not None] == again.segments[b]


@pytest.mark.parametrize("kw, match", [
    (dict(repetition_penalty=0.0), "repetition_penalty must be"),
    (dict(repetition_penalty=float("inf")), "repetition_penalty must be"),
    (dict(no_repeat_sentence="yes"), "no_repeat_sentence must be"),
])
def test_bad_repetition_options_are_refused(sllm, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sllm.generate(TEXTS, **kw, **OPTS)


def test_cli_flags_become_generation_options():
    from graftlm.demo.cli_generate import add_arguments, sampling_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["run", "Hi.", "--no-repeat-sentence", "--repetition-penalty", "1.3"])
    assert sampling_options(args) == {"no_repeat_sentence": True, "repetition_penalty": 1.3}
    with pytest.raises(ValueError, match="--repetition-penalty"):
        sampling_options(parser.parse_args(["run", "Hi.", "--repetition-penalty", "0"]))
