"""SentenceVAE checkpoints: save/load round trip, bad checkpoints, and the official .pth converter
proven against a reference forward built from real torch.nn.Transformer*Layer modules."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from graftlm.vae import SentenceVAE, SentenceVAEConfig

V, H, HEADS, LAYERS, PAD, BOS, EOS = 50, 32, 4, 2, 1, 2, 2  # OPT-style ids: bos = eos


# ----------------------------------------------------------------- our format
@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_is_bit_identical(tmp_path, rng, tied):
    torch.manual_seed(0)
    model = SentenceVAE(SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=HEADS, num_layers=1,
                                          tie_word_embeddings=tied, init_std=0.2)).eval()
    model.save_pretrained(tmp_path)
    loaded = SentenceVAE.from_pretrained(tmp_path)
    assert loaded.config == model.config
    ids = torch.randint(3, V, (3, 6), generator=rng)
    mask = torch.ones(3, 6, dtype=torch.bool)
    assert torch.equal(loaded(ids, mask).logits, model(ids, mask).logits)
    v = torch.randn(3, H, generator=rng)
    assert loaded.generate(v, 10) == model.generate(v, 10)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert ("decoder.lm_head.weight" in stored) != tied  # a tied head is stored once
    if tied:
        assert loaded.decoder.lm_head.weight is loaded.decoder.embedding.embed.weight


def test_from_pretrained_device_and_dtype(tmp_path):
    SentenceVAE(SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=HEADS, num_layers=1)).save_pretrained(tmp_path)
    loaded = SentenceVAE.from_pretrained(tmp_path, device="cpu", dtype=torch.float64)
    assert loaded.decoder.lm_head.weight.dtype == torch.float64 and not loaded.training


def _saved(tmp_path) -> dict[str, torch.Tensor]:
    SentenceVAE(SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=HEADS, num_layers=1)).save_pretrained(tmp_path)
    return load_file(str(tmp_path / "model.safetensors"))


def test_missing_keys_are_listed(tmp_path):
    state = _saved(tmp_path)
    del state["encoder.fusion_norm.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: encoder\.fusion_norm\.weight"):
        SentenceVAE.from_pretrained(tmp_path)


def test_unexpected_keys_are_listed(tmp_path):
    state = _saved(tmp_path)
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys: extra\.weight"):
        SentenceVAE.from_pretrained(tmp_path)


def test_wrong_shapes_are_listed(tmp_path):
    _saved(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["ffn_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"wrong shapes: .*linear1\.weight: checkpoint \(128, 32\) vs model \(64, 32\)"):
        SentenceVAE.from_pretrained(tmp_path)


def test_missing_files_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        SentenceVAE.from_pretrained(tmp_path)


# ----------------------------------------------------------------- the authors' format
def sinusoid(n: int, d: int) -> torch.Tensor:
    pe = torch.zeros(n, d)
    for pos in range(n):
        for i in range(0, d, 2):
            angle = pos / 10000 ** (i / d)
            pe[pos, i], pe[pos, i + 1] = math.sin(angle), math.cos(angle)
    return pe


class RefEncoder(nn.Module):
    """The official encoder's structure, with PyTorch's own layers (reference only)."""

    def __init__(self, embed_dim: int, weighted: bool) -> None:
        super().__init__()
        self.embed_token = nn.Embedding(V, embed_dim, padding_idx=PAD)
        self.project_in = nn.Linear(embed_dim, H, bias=False) if embed_dim != H else None
        layer = nn.TransformerEncoderLayer(H, HEADS, 2 * H, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.la = nn.Linear(H, 1) if weighted else None
        self.lnorm = nn.LayerNorm(H)

    def forward(self, ids, mask):
        x = self.embed_token(ids)
        if self.project_in is not None:
            x = self.project_in(x)
        x = x + sinusoid(64, H)[: ids.shape[1]]
        hidden = self.encoder(x, src_key_padding_mask=~mask)
        hidden = hidden.masked_fill(~mask[..., None], 0.0)
        if self.la is not None:
            hidden = hidden * self.la(hidden)
        return self.lnorm(hidden.sum(1))


class RefDecoder(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.embed_token = nn.Embedding(V, embed_dim, padding_idx=PAD)
        self.project_in = nn.Linear(embed_dim, H, bias=False) if embed_dim != H else None
        layer = nn.TransformerDecoderLayer(H, HEADS, 2 * H, dropout=0.1, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, LAYERS)
        self.linear = nn.Linear(H, V)

    def forward(self, ids, vectors):
        x = self.embed_token(ids)
        if self.project_in is not None:
            x = self.project_in(x)
        x = x + sinusoid(64, H)[: ids.shape[1]]
        causal = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        return self.linear(self.decoder(x, vectors[:, None, :], tgt_mask=causal, tgt_is_causal=True))


def official_checkpoint(embed_dim=H, weighted=False):
    torch.manual_seed(0)
    encoder, decoder = RefEncoder(embed_dim, weighted).eval(), RefDecoder(embed_dim).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a wrong mapping cannot pass
        for p in [*encoder.parameters(), *decoder.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    config = SentenceVAEConfig.official(vocab_size=V, hidden_size=H, num_heads=HEADS, num_layers=LAYERS,
                                        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, embed_dim=embed_dim,
                                        fusion="weighted" if weighted else "sum")
    return encoder, decoder, state, config


def tokens(rng):
    ids = torch.randint(3, V, (3, 7), generator=rng)
    mask = torch.arange(7)[None, :] < torch.tensor([[7], [4], [2]])
    return ids, mask


@pytest.mark.parametrize("embed_dim, weighted", [(H, False), (H, True), (16, False)])
def test_official_checkpoint_reproduces_the_reference_forward(tmp_path, rng, embed_dim, weighted):
    encoder, decoder, state, config = official_checkpoint(embed_dim, weighted)
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, tmp_path / "svae.pth")  # mmengine layout
    model = SentenceVAE.from_official(tmp_path / "svae.pth", config)
    ids, mask = tokens(rng)
    with_bos = torch.cat([torch.full((3, 1), BOS), ids.masked_fill(~mask, PAD)], 1)  # the official input
    mask_bos = torch.cat([torch.ones(3, 1, dtype=torch.bool), mask], 1)
    with torch.no_grad():
        expected_vectors = encoder(with_bos, mask_bos)
        vectors = model.encode(ids, mask)
        torch.testing.assert_close(vectors, expected_vectors, atol=1e-5, rtol=1e-4)
        expected_logits = decoder(with_bos, vectors)
        logits = model.decode_logits(vectors, ids, mask)
    real = mask_bos  # decoder positions holding bos or a real token
    torch.testing.assert_close(logits[real], expected_logits[real], atol=1e-4, rtol=1e-4)


def test_official_raw_state_dict_with_module_prefix_and_fp16(tmp_path, rng):
    encoder, _, state, config = official_checkpoint()
    torch.save({f"module.{k}": v.half() for k, v in state.items()}, tmp_path / "raw.pth")
    model = SentenceVAE.from_official(tmp_path / "raw.pth", config)
    ids, mask = tokens(rng)
    assert model.encoder.embedding.embed.weight.dtype == torch.float32
    with_bos = torch.cat([torch.full((3, 1), BOS), ids.masked_fill(~mask, PAD)], 1)
    mask_bos = torch.cat([torch.ones(3, 1, dtype=torch.bool), mask], 1)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(ids, mask), encoder(with_bos, mask_bos), atol=5e-2, rtol=5e-2)


def test_official_ema_weights(tmp_path):
    """mmengine's EMAHook writes the average under state_dict and the raw weights (module.-prefixed)
    under ema_state_dict; use_ema=False picks the raw ones (tests/test_official_svae.py checks a
    real Runner file)."""
    _, _, state, config = official_checkpoint()
    raw = {f"module.{k}": torch.zeros_like(v) if k.endswith("lnorm.bias") else v for k, v in state.items()}
    torch.save({"state_dict": state, "ema_state_dict": {**raw, "steps": torch.tensor(5)}}, tmp_path / "ema.pth")
    assert (SentenceVAE.from_official(tmp_path / "ema.pth", config, use_ema=False).encoder.fusion_norm.bias == 0).all()
    assert (SentenceVAE.from_official(tmp_path / "ema.pth", config, use_ema=True).encoder.fusion_norm.bias != 0).any()


def test_official_checkpoint_missing_key(tmp_path):
    _, _, state, config = official_checkpoint()
    del state["decoder.decoder.layers.1.multihead_attn.in_proj_weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys: decoder\.decoder\.layers\.1\.multihead_attn\.in_proj_weight"):
        SentenceVAE.from_official(tmp_path / "bad.pth", config)


def test_official_checkpoint_wrong_config(tmp_path):
    _, _, state, _ = official_checkpoint()
    torch.save(state, tmp_path / "svae.pth")
    config = SentenceVAEConfig.official(vocab_size=V, hidden_size=H, num_heads=HEADS, num_layers=1,
                                        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
    with pytest.raises(ValueError, match=r"unexpected keys: .*decoder\.layers\.1\."):
        SentenceVAE.from_official(tmp_path / "svae.pth", config)


class NotAWeight:
    """A Python object: torch.save pickles it by reference; the official reader never imports it."""


def test_pickled_objects_are_skipped_not_run(tmp_path):
    _, _, state, config = official_checkpoint()
    torch.save({"state_dict": state, "cfg": NotAWeight()}, tmp_path / "pickled.pth")
    model = SentenceVAE.from_official(tmp_path / "pickled.pth", config)
    assert torch.equal(model.decoder.lm_head.bias, state["decoder.linear.bias"])
