"""graft(): what it removes, what it adds, what trains (freeze / train_layers / LoRA), bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import graftlm
from graftlm import graft
from graftlm.tokenization import ByteTokenizer

from fixtures.tiny_models import BACKBONES, TEXTS, one_thread, paragraphs_batch, tiny_llama, tiny_opt, tiny_vae  # noqa: F401


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _step(sllm, batch) -> None:
    opt = torch.optim.SGD([p for p in sllm.parameters() if p.requires_grad], lr=0.1)
    sllm(**batch.as_model_inputs()).loss.backward()
    opt.step()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: nn.Module) -> dict[str, bool]:
    return {n: not torch.equal(before[n], p) for n, p in module.named_parameters()}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_graft_drops_embedding_and_head(name):
    model = BACKBONES[name]()
    embed = model.get_input_embeddings().weight.numel()
    total = _count(model.parameters())
    vae = tiny_vae()
    sllm = graft(model, vae)
    assert _count(sllm.body.parameters()) == total - embed  # tied head: one tensor
    assert model.lm_head is None
    grafted = _count(sllm.parameters())
    assert grafted == total - embed + _count(vae.parameters()) + _count(sllm.termination_head.parameters())


def test_same_width_needs_no_projection():
    sllm = graft(tiny_opt(hidden=32), tiny_vae(hidden=32))
    assert isinstance(sllm.proj_in, nn.Identity) and isinstance(sllm.proj_out, nn.Identity)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_hidden_size_mismatch_uses_projections(name):
    sllm = graft(BACKBONES[name](hidden=48), tiny_vae(hidden=32))
    assert sllm.proj_in.weight.shape == (48, 32) and sllm.proj_out.weight.shape == (32, 48)
    out = sllm(**paragraphs_batch(TEXTS).as_model_inputs())
    out.loss.backward()
    assert sllm.proj_in.weight.grad.abs().sum() > 0 and sllm.proj_out.weight.grad.abs().sum() > 0


def test_opt_350m_style_grafts_and_trains():
    model = tiny_opt(hidden=64, proj=32)  # word_embed_proj_dim 32 != hidden 64: project_in/out
    sllm = graft(model, tiny_vae(hidden=32))
    assert isinstance(sllm.proj_in, nn.Identity)  # the body's own width is word_embed_proj_dim
    assert sllm.body.project_in is not None and sllm.body.project_out is not None
    batch = paragraphs_batch(TEXTS)
    before = _snapshot(sllm.body)
    _step(sllm, batch)
    changed = _changed(before, sllm.body)
    assert changed["project_in.weight"] and changed["project_out.weight"]


def test_freeze_vae_keeps_it_unchanged_and_trains_the_rest():
    sllm = graft(tiny_opt(), tiny_vae(), freeze="vae")
    vae_before, body_before = _snapshot(sllm.vae), _snapshot(sllm.body)
    _step(sllm, paragraphs_batch(TEXTS))
    assert not any(_changed(vae_before, sllm.vae).values())
    assert all(not p.requires_grad for p in sllm.vae.parameters())
    assert _changed(body_before, sllm.body)["layers.0.self_attn.q_proj.weight"]


def test_freeze_backbone_with_train_layers_keeps_middle_frozen():
    sllm = graft(tiny_llama(layers=3), tiny_vae(), freeze="backbone", train_layers=1)
    before = _snapshot(sllm.body)
    _step(sllm, paragraphs_batch(TEXTS))
    changed = _changed(before, sllm.body)
    assert changed["layers.0.mlp.down_proj.weight"] and changed["layers.2.mlp.down_proj.weight"]
    assert not any(v for n, v in changed.items() if n.startswith("layers.1."))
    assert not changed["norm.weight"]


def test_lora_trains_only_lora_and_graft_parameters():
    from peft import LoraConfig

    sllm = graft(tiny_opt(), tiny_vae(), freeze="vae", lora=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora = [p for n, p in sllm.body.named_parameters() if "lora_" in n]
    # 2 layers x 2 modules x (A: r x 32 + B: 32 x r)
    assert _count(lora) == 2 * 2 * (4 * 32 + 32 * 4)
    trainable = [p for p in sllm.parameters() if p.requires_grad]
    assert _count(trainable) == _count(lora) + _count(sllm.graft_parameters())
    before = _snapshot(sllm.body)
    _step(sllm, paragraphs_batch(TEXTS))
    changed = _changed(before, sllm.body)
    assert any(v for n, v in changed.items() if "lora_B" in n)
    assert not any(v for n, v in changed.items() if "lora_" not in n)


def test_lora_with_vae_trainable_counts_vae_too():
    from peft import LoraConfig

    sllm = graft(tiny_llama(), tiny_vae(), lora=LoraConfig(r=2, target_modules=["q_proj"]))
    lora = _count(p for n, p in sllm.body.named_parameters() if "lora_" in n)
    trainable = _count(p for p in sllm.parameters() if p.requires_grad)
    assert trainable == lora + _count(sllm.graft_parameters()) + _count(sllm.vae.parameters())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_fifty_steps_on_real_text_lower_the_loss(name, pydoc_paragraphs):
    texts = [p[:160] for p in pydoc_paragraphs if 80 <= len(p)][:8]
    batch = paragraphs_batch(texts, max_tokens=24)
    sllm = graft(BACKBONES[name](), tiny_vae(), tokenizer=ByteTokenizer())
    sllm.train()
    inputs = batch.as_model_inputs()
    with torch.no_grad():
        start = sllm(**inputs).loss.item()
    opt = torch.optim.AdamW(sllm.parameters(), lr=3e-3)
    for _ in range(50):
        opt.zero_grad()
        sllm(**inputs).loss.backward()
        opt.step()
    with torch.no_grad():
        end = sllm(**inputs)
    assert end.loss.item() < 0.7 * start
    assert torch.isfinite(end.decoder_loss) and torch.isfinite(end.termination_loss)


# ---------------------------------------------------------------- bad input
def test_already_grafted_model_is_refused():
    model = tiny_opt()
    sllm = graft(model, tiny_vae())
    with pytest.raises(ValueError, match="already grafted"):
        graft(model, tiny_vae())
    with pytest.raises(ValueError, match="already grafted"):
        graft(sllm, tiny_vae())


def test_unsupported_architecture_is_refused_before_any_change():
    # GPT-2 grafts through the generic adapter since issue 20; RWKV fails its self-test
    from fixtures.tiny_archs import VOCAB, tiny_arch

    model = tiny_arch("rwkv")
    embed = model.get_input_embeddings()
    with pytest.raises(ValueError, match="RwkvForCausalLM failed graftlm's graft-time self-test"):
        graft(model, tiny_vae(vocab=VOCAB))
    assert model.get_input_embeddings() is embed


def test_vocab_mismatch_is_refused_unless_own_vocab():
    model = tiny_opt(vocab=300)
    with pytest.raises(ValueError, match="vocab_size=259.*300.*own_vocab=True"):
        graft(model, tiny_vae())
    assert model.model.decoder.embed_tokens is not None  # nothing was stripped
    assert graft(model, tiny_vae(), own_vocab=True, tokenizer=ByteTokenizer()).tokenizer is not None


def test_tokenizer_larger_than_vae_vocab_is_refused():
    class Big:
        def __len__(self) -> int:
            return 1000

    with pytest.raises(ValueError, match="tokenizer has 1000 tokens"):
        graft(tiny_opt(), tiny_vae(), tokenizer=Big())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(freeze="everything"), ValueError, "unknown freeze"),
        (dict(train_layers=1), ValueError, "train_layers"),
        (dict(freeze="backbone", train_layers=-1), ValueError, "non-negative"),
        (dict(lora={"r": 4}), TypeError, "LoraConfig"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        graft(tiny_opt(), tiny_vae(), **kwargs)


def test_non_vae_is_refused():
    with pytest.raises(TypeError, match="SentenceVAE"):
        graft(tiny_opt(), nn.Linear(2, 2))


def test_graft_is_exported_lazily():
    """`import graftlm` loads no model code; the first use of `graftlm.graft` loads it."""
    code = ("import sys, graftlm; before = 'graftlm.sllm.model' in sys.modules; graftlm.graft; "
            "print(before, 'graftlm.sllm.model' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["False", "True"], res.stderr[-2000:]
    assert graftlm.graft is graft


def test_body_in_bfloat16_with_float32_vae():
    sllm = graft(tiny_llama(hidden=48).to(torch.bfloat16), tiny_vae(hidden=32), tokenizer=ByteTokenizer())
    assert sllm.proj_in.weight.dtype == torch.bfloat16 and next(sllm.vae.parameters()).dtype == torch.float32
    out = sllm(**paragraphs_batch(TEXTS).as_model_inputs())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    texts = sllm.eval().generate(TEXTS, max_new_sentences=1, ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=3)
    assert len(texts) == 3
