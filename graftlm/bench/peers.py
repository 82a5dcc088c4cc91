"""What a user tries first to speed up plain decoding: HF prompt-lookup decoding and HF assisted
(speculative) generation, as runners comparable with `graftlm.evaluation.throughput`'s.

Every runner performs one full generation of exactly ``batch * new_tokens`` output tokens (eos
cannot stop it) and keeps its last output in ``.last`` so a row can say whether it equals plain
greedy decoding. Sampled runs (temperature 0.8, top-p 0.95) reseed before every call; a
speculative method's sampled output follows the backbone's distribution but not its exact tokens
(different random draws), so only greedy rows are compared token by token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from graftlm.evaluation.throughput import model_device
from graftlm.evaluation.speed import shared_copy

TEMPERATURE = 0.8
TOP_P = 0.95
PROMPT_LOOKUP = (5, 10)


@dataclass
class GenerateRunner:
    """One HF ``generate`` call with fixed options, timed as a `Runner` (returns output tokens)."""

    model: torch.nn.Module
    input_ids: torch.Tensor
    new_tokens: int
    options: dict[str, Any] = field(default_factory=dict)
    sample: bool = False
    seed: int = 0
    last: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.input_ids = self.input_ids.to(model_device(self.model))
        cfg = self.model.config
        self._pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0

    @torch.inference_mode()
    def __call__(self) -> int:
        sampling = dict(do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=0) if self.sample else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.sample:
            torch.manual_seed(self.seed)
        out = self.model.generate(input_ids=self.input_ids, attention_mask=torch.ones_like(self.input_ids),
                                  min_new_tokens=self.new_tokens, max_new_tokens=self.new_tokens,
                                  pad_token_id=self._pad, use_cache=True, **sampling, **self.options)
        new = out[:, self.input_ids.shape[1]:]
        if new.shape[1] != self.new_tokens:
            raise RuntimeError(f"generate produced {new.shape[1]} tokens, expected {self.new_tokens}")
        self.last = new
        return new.numel()


def decoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The (dotted name, ModuleList) of ``model``'s transformer blocks: the ModuleList with
    ``config.num_hidden_layers`` entries (Llama's ``model.layers``, OPT's ``model.decoder.layers``,
    GPT-2's ``transformer.h`` alike)."""
    n = getattr(model.config, "num_hidden_layers", None)
    found = [(name, mod) for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.ModuleList) and len(mod) == n]
    if n is None or len(found) != 1:
        raise ValueError(f"cannot tell which ModuleList of {type(model).__name__} holds its {n} decoder layers "
                         f"(candidates: {[name for name, _ in found]}); name a separate draft model instead")
    return found[0]


def first_layers_draft(model: torch.nn.Module, k: int) -> torch.nn.Module:
    """A draft model that is ``model`` cut after its first ``k`` decoder layers (final norm and LM
    head kept), sharing every weight with ``model`` (self-speculative decoding's simplest draft)."""
    name, layers = decoder_layers(model)
    if not 1 <= k < len(layers):
        raise ValueError(f"a first-k-layers draft needs 1 <= k < {len(layers)} (the model's layers), got {k}")
    draft = shared_copy(model)
    parent_name, _, attr = name.rpartition(".")
    parent = draft.get_submodule(parent_name) if parent_name else draft
    setattr(parent, attr, torch.nn.ModuleList(list(getattr(parent, attr))[:k]))
    cfg = draft.config = type(model.config).from_dict(model.config.to_dict())
    cfg.num_hidden_layers = k
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:k]
    for sub in draft.modules():  # inner modules (e.g. LlamaModel) hold their own config reference
        if sub is not draft and getattr(sub, "config", None) is model.config:
            sub.config = cfg
    return draft.eval()


def peer_runners(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int, *, sample: bool,
                 drafts: dict[str, torch.nn.Module] | None = None,
                 lookup: tuple[int, ...] = PROMPT_LOOKUP) -> dict[str, GenerateRunner]:
    """Plain HF ``generate``, prompt lookup with each of ``lookup`` tokens, and assisted generation
    with each named draft model, on the same prompts. Batch 1 only (HF refuses more for both)."""
    if input_ids.shape[0] != 1:
        raise ValueError(f"prompt lookup and assisted generation run at batch 1 only, got batch {input_ids.shape[0]}")
    out = {"hf_generate": GenerateRunner(model, input_ids, new_tokens, sample=sample)}
    for k in lookup:
        out[f"prompt_lookup-{k}"] = GenerateRunner(model, input_ids, new_tokens, {"prompt_lookup_num_tokens": k},
                                                   sample=sample)
    for name, draft in (drafts or {}).items():
        out[f"assisted:{name}"] = GenerateRunner(model, input_ids, new_tokens, {"assistant_model": draft},
                                                 sample=sample)
    return out


def load_draft(name_or_path: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A user-named draft model: a local HF causal-LM folder or hub id (``from_pretrained``)."""
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).eval()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load draft model {name_or_path!r} ({err}); pass a local causal-LM folder "
                         "that shares the backbone's tokenizer") from err
