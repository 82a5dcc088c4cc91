"""SentenceVAEConfig: presets, validation, JSON round trip."""

from __future__ import annotations

import pytest

from graftlm.vae import SentenceVAEConfig


def test_official_preset_is_the_authors_architecture():
    c = SentenceVAEConfig.official(vocab_size=50272, hidden_size=768, num_heads=12, num_layers=2)
    assert (c.norm_first, c.position, c.activation, c.ffn_size, c.dropout) == (False, "sinusoidal", "relu", 1536, 0.1)
    assert (c.fusion, c.tie_word_embeddings, c.encoder_bos, c.max_tokens, c.loss, c.focal_gamma) == (
        "sum", False, True, 64, "focal", 2.0)
    assert c.max_segment_tokens == 63


def test_modern_default():
    c = SentenceVAEConfig(vocab_size=100, hidden_size=64, num_heads=4)
    assert (c.norm_first, c.position, c.activation, c.ffn_size, c.tie_word_embeddings) == (True, "rope", "gelu", 256, True)
    assert c.embed_dim == 64 and c.max_segment_tokens is None


def test_json_round_trip(tmp_path):
    c = SentenceVAEConfig.official(vocab_size=100, hidden_size=64, num_heads=4, fusion="weighted", embed_dim=32)
    c.to_json_file(tmp_path / "c.json")
    assert SentenceVAEConfig.from_json_file(tmp_path / "c.json") == c
    assert SentenceVAEConfig.from_dict(c.to_dict()) == c


def test_unknown_key_names_close_matches():
    with pytest.raises(ValueError, match=r"unknown SentenceVAEConfig key 'hiden_size'; did you mean 'hidden_size'"):
        SentenceVAEConfig.from_dict({"vocab_size": 10, "hiden_size": 8})


def test_bad_json_file(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SentenceVAEConfig.from_json_file(tmp_path / "c.json")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=30, num_heads=4), "not divisible by num_heads"),
        (dict(pad_token_id=100), r"pad_token_id=100 is outside the vocabulary \[0, 100\)"),
        (dict(eos_token_id=-1), "eos_token_id=-1 is outside"),
        (dict(bos_token_id=100), "bos_token_id"),
        (dict(fusion="max"), "unknown fusion 'max'"),
        (dict(position="alibi"), "unknown position"),
        (dict(activation="swish"), "unknown activation"),
        (dict(loss="mse"), "unknown loss"),
        (dict(dropout=1.0), "dropout"),
        (dict(focal_gamma=-1.0), "focal_gamma"),
        (dict(num_layers=0), "num_layers must be a positive int"),
        (dict(embed_dim=32), "tie_word_embeddings needs embed_dim == hidden_size"),
        (dict(hidden_size=30, num_heads=10), "RoPE needs an even head dim"),
    ],
)
def test_validation(kwargs, match):
    base = dict(vocab_size=100, hidden_size=64, num_heads=4)
    with pytest.raises(ValueError, match=match):
        SentenceVAEConfig(**{**base, **kwargs})
