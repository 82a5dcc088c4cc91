"""Distillation from the un-grafted backbone: the KL is the hand-computed one, the teacher's
targets line up with the tokens they predict, and the option round-trips through save/load."""

from __future__ import annotations

import math

import pytest
import torch

import graftlm
from graftlm import graft
from graftlm.sllm.distill import distillation_loss, teacher_topk

from fixtures.tiny_models import TEXTS, one_thread, paragraphs_batch, tiny_opt, tiny_vae  # noqa: F401


def test_kl_equals_a_hand_computed_value():
    student = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))  # (M=1, L=1, V=3) logits (log-probs)
    teacher_ids = torch.tensor([[[0, 1]]])  # top-2 of the teacher
    teacher_lp = torch.log(torch.tensor([[[0.6, 0.2]]]))  # renormalised: 0.75, 0.25
    kl = distillation_loss(student, teacher_ids, teacher_lp, torch.tensor([[True]]))
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.25)
    assert math.isclose(float(kl), expected, rel_tol=1e-6)


def test_kl_ignores_masked_tokens_and_is_zero_for_equal_distributions():
    logits = torch.randn(2, 3, 7)
    lp = torch.log_softmax(logits, -1)
    top_lp, top_ids = lp.topk(7, -1)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(distillation_loss(logits, top_ids, top_lp, mask)) < 1e-6


def test_teacher_targets_condition_on_all_earlier_tokens():
    teacher = tiny_opt().eval()
    batch = paragraphs_batch(TEXTS)
    ids, lp = teacher_topk(teacher, batch.input_ids, batch.token_mask, batch.sentence_mask, k=5)
    b, s, t = 0, 1, 2  # token 2 of sentence 1 of paragraph 0
    flat = torch.cat([batch.input_ids[b, j][batch.token_mask[b, j]] for j in range(s)]
                     + [batch.input_ids[b, s, :t]])
    with torch.no_grad():
        ref = torch.log_softmax(teacher(input_ids=flat[None]).logits[0, -1], -1).topk(5)
    torch.testing.assert_close(lp[b, s, t], ref.values)
    assert torch.equal(ids[b, s, t], ref.indices)
    assert torch.isinf(lp[0, 0, 0]).all()  # the very first token has no context


def test_packed_teacher_rows_match_the_decoder_targets():
    from graftlm.sllm.distill import packed_teacher

    t_ids = torch.arange(2 * 3 * 2).view(2, 3, 2)
    t_lp = torch.zeros(2, 3, 2)
    t_lp[0, 2:] = t_lp[1, 1:] = float("-inf")  # as teacher_topk leaves padding: no teacher there
    target = torch.tensor([[True, True, True, False], [True, True, False, False]])  # lengths 2 and 1, + eos
    ids, lp = packed_teacher(t_ids, t_lp, target)
    assert ids.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert torch.isfinite(lp[[0, 1, 3]]).all() and torch.isinf(lp[[2, 4]]).all()  # the eos rows have none


def test_training_loss_adds_the_weighted_kl():
    sllm = graft(tiny_opt(), tiny_vae())
    batch = paragraphs_batch(TEXTS)
    plain = sllm(**batch.as_model_inputs())
    sllm.set_teacher(tiny_opt(seed=3), weight=0.5, topk=8)
    out = sllm(**batch.as_model_inputs())
    assert out.distillation_loss is not None and float(out.distillation_loss.detach()) > 0
    torch.testing.assert_close(out.loss, plain.loss + 0.5 * out.distillation_loss)
    sllm.eval()
    assert sllm(**batch.as_model_inputs()).distillation_loss is None  # evaluation measures the model alone
    assert all(not k.startswith("_teacher") for k in sllm.state_dict())


def test_distillation_settings_round_trip(tmp_path):
    sllm = graft(tiny_opt(), tiny_vae())
    sllm.set_teacher(tiny_opt(), weight=0.5, topk=8)
    sllm.save_pretrained(tmp_path / "m", save_backbone="weights")
    loaded = graftlm.load(tmp_path / "m")
    assert loaded.graft_options["distill"] == {"weight": 0.5, "topk": 8}
    assert loaded.teacher is None  # the teacher is a training-time object, not part of the model


def test_bad_teacher_settings_are_rejected():
    sllm = graft(tiny_opt(), tiny_vae())
    with pytest.raises(ValueError, match="weight must be > 0"):
        sllm.set_teacher(tiny_opt(), weight=0.0)
    with pytest.raises(ValueError, match="topk"):
        sllm.set_teacher(tiny_opt(), weight=1.0, topk=0)
