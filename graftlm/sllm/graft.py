"""Grafting: strip a causal LM's embedding and LM head and wrap it into a SentenceLLM (the public
`graftlm.graft` is `graft_into(SentenceLLM, ...)`; the class comes in as ``cls`` so that loading,
which grafts too, needs no import of the class)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from graftlm.plugins import BackboneAdapter, find_adapter, is_grafted, mark_grafted
from graftlm.plugins.manager import describe_model
from graftlm.plugins.selftest import SelfTestError, probe, vocabulary_embeddings
from graftlm.sllm.leak import apply_attention, check_attention

FREEZE_CHOICES = ("none", "vae", "backbone")


def _freeze_set(freeze: str | Iterable[str]) -> set[str]:
    parts = {freeze} if isinstance(freeze, str) else set(freeze)
    unknown = parts - set(FREEZE_CHOICES)
    if unknown:
        raise ValueError(f"unknown freeze option(s) {sorted(unknown)}; use 'none', 'vae', 'backbone' or a list of them")
    return parts - {"none"}


def _check_vae(vae: Any) -> None:
    for name in ("encode", "decode_loss", "generate", "hidden_size", "config", "parameters"):
        if not hasattr(vae, name):
            raise TypeError(f"vae must be a graftlm SentenceVAE (missing .{name}); got {type(vae).__name__}")


def _tokenizer_size(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return int(tokenizer.vocab_size)


def _check_vocab(model: nn.Module, vae: Any, tokenizer: Any, own_vocab: bool) -> None:
    vae_vocab = int(vae.config.vocab_size)
    backbone_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not own_vocab and backbone_vocab is not None and int(backbone_vocab) != vae_vocab:
        raise ValueError(
            f"vocabulary mismatch: the SentenceVAE has vocab_size={vae_vocab} but the backbone has "
            f"{backbone_vocab}. Train the VAE with the backbone's tokenizer, or — if the VAE "
            "deliberately uses its own tokenizer (e.g. ByteTokenizer) — pass own_vocab=True and "
            "tokenizer=<that tokenizer>."
        )
    if tokenizer is not None:
        size = _tokenizer_size(tokenizer)
        # embedding tables are often padded (OPT: 50272 rows for 50265 tokens): only more is fatal
        if size > vae_vocab:
            raise ValueError(
                f"vocabulary mismatch: the tokenizer has {size} tokens but the SentenceVAE only "
                f"{vae_vocab}; use the tokenizer the VAE was trained with"
            )


def _apply_freezing(sllm: Any, frozen: set[str], train_layers: int | None, lora: Any) -> None:
    if "vae" in frozen:
        sllm.vae.requires_grad_(False)
    if "backbone" in frozen or lora is not None:
        sllm.body.requires_grad_(False)
    if train_layers is not None:
        layers = sllm.adapter.layers(sllm.body)
        k = min(train_layers, len(layers))
        for i, layer in enumerate(layers):
            if i < k or i >= len(layers) - k:
                layer.requires_grad_(True)
    if lora is not None:
        for name, p in sllm.body.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)


def _check_lora_targets(model: nn.Module, lora: Any) -> None:
    """Fail before anything is stripped when a list of ``target_modules`` names no module at all.
    (peft matches a name by its last components; regex strings are left to the injection, whose
    failure is rolled back.)"""
    targets = lora.target_modules
    if targets is None or isinstance(targets, str):
        return
    names = [n for n, _ in model.named_modules() if n]
    if not any(n == t or n.endswith("." + t) for t in targets for n in names):
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
        raise ValueError(
            f"LoraConfig(target_modules={sorted(targets)!r}) matches no module of {type(model).__name__}; "
            f"its leaf module names are: {', '.join(leaves[:30])}. The model was not modified."
        )


class _Rollback:
    """Undo everything `graft` does to ``model`` (stripped modules, injected LoRA layers, graftlm/peft
    attributes, requires_grad) when a later step fails: grafting is all-or-nothing."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = [(m, dict(m._modules), set(vars(m))) for m in model.modules()]
        self.grads = [(p, p.requires_grad) for p in model.parameters()]

    def restore(self) -> None:
        for module, children, attrs in self.modules:
            module._modules.clear()
            module._modules.update(children)
            for extra in set(vars(module)) - attrs:
                delattr(module, extra)
        for p, flag in self.grads:
            p.requires_grad_(flag)


def _inject_lora(body: nn.Module, lora: Any) -> None:
    if not isinstance(lora, LoraConfig):
        raise TypeError(f"lora must be a peft.LoraConfig, got {type(lora).__name__}")
    inject_adapter_in_model(lora, body)
    if not any("lora_" in n for n, _ in body.named_parameters()):
        raise ValueError(f"LoraConfig(target_modules={lora.target_modules!r}) matched no module of the backbone body")


def _self_test(adapter: BackboneAdapter, model: nn.Module) -> None:
    """Probe the un-stripped body (`graftlm.plugins.selftest`); refuse ``model`` if it fails."""
    try:
        body = adapter.body(model)
    except Exception as err:  # noqa: BLE001 - the adapter cannot find a body in this model
        raise SelfTestError(f"adapter {adapter.name!r} finds no body in {describe_model(model)}: {err}. "
                            "The model was not modified.") from err
    try:
        token_embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        token_embedding = None
    if token_embedding is not None:  # the embedding strip removes is no reason to refuse
        _refuse_vocabulary_tables(model, vocabulary_embeddings(body, besides=token_embedding))
    probe(adapter, body, type(model).__name__)


def _refuse_vocabulary_tables(model: nn.Module, names: list[str]) -> None:
    if names:
        raise SelfTestError(
            f"{type(model).__name__} holds vocabulary-sized embeddings besides its token embedding "
            f"({', '.join(names)}): it looks its inputs up by token id, and a sentence position has none. "
            "The model was not modified."
        )


def _check_stripped(adapter: BackboneAdapter, model: nn.Module, body: nn.Module) -> None:
    """After strip: no vocabulary-sized table left behind, and the body still runs without its embedding."""
    _refuse_vocabulary_tables(model, vocabulary_embeddings(body))
    param = next(body.parameters())
    x = torch.zeros(1, 1, int(adapter.hidden_size(body)), dtype=param.dtype, device=param.device)
    one = torch.ones(1, 1, dtype=torch.bool, device=param.device)
    try:
        with torch.no_grad():
            adapter.forward(body, x, one, torch.zeros(1, 1, dtype=torch.long, device=param.device))
    except Exception as err:  # noqa: BLE001
        raise SelfTestError(f"{type(model).__name__}'s body no longer runs once its embedding is removed "
                            f"({type(err).__name__}: {err})") from err


def _rolled_back(err: Exception) -> Exception | None:
    """The same error type with a note that nothing was changed, or None if it cannot be rebuilt."""
    if not isinstance(err, (ValueError, TypeError, RuntimeError, KeyError, AttributeError)):
        return None
    try:
        return type(err)(f"{err} (grafting was rolled back: the backbone is unchanged and can be grafted again)")
    except Exception:
        return None


def graft_into(
    cls: type,
    model: nn.Module,
    vae: Any,
    *,
    freeze: str | Iterable[str] = "none",
    train_layers: int | None = None,
    lora: Any = None,
    termination_gamma: float = 2.0,
    termination_weight: float = 1.0,
    tokenizer: Any = None,
    own_vocab: bool = False,
    adapter: BackboneAdapter | None = None,
    attention: str = "causal",
) -> Any:
    """Graft ``vae`` onto the causal LM ``model`` (modified in place: its embedding and LM head go);
    the result is a ``cls`` (`graftlm.graft` passes `SentenceLLM`).

    Options:
        freeze: "none" (all trains), "vae", "backbone", or a list such as ["vae", "backbone"].
        train_layers: with freeze including "backbone", keep the first and last k decoder layers
            trainable (the authors' ``finetune_layers``).
        lora: a ``peft.LoraConfig``; LoRA modules are injected into the body, whose other weights
            freeze. Trainable then: LoRA + projections + termination head (+ the VAE unless frozen).
        termination_gamma / termination_weight: focal γ of the termination loss and its weight.
        tokenizer: stored for `generate`; checked to fit the VAE's vocabulary.
        own_vocab: by default the VAE's vocab_size must equal the backbone's (they share a
            tokenizer); True allows a VAE with its own tokenizer (the backbone never sees tokens).
        adapter: bypass plugin discovery with an explicit adapter; used even when ``model``'s type
            is not in its ``model_types`` (with a warning).
        attention: "causal" (the default and the only language model) or "bidirectional", the
            authors' leak reproduced for research (warns; see `graftlm.sllm.leak`).

    Unless the adapter declares ``model``'s architecture verified, a self-test probes the body
    first (causality, padding on either side, a cached step; `graftlm.plugins.selftest`) and
    refuses a model that fails it (`SelfTestError`, a ValueError naming the property it lacks).

    Raises ValueError for an already grafted model, an architecture no adapter handles, a vocab
    mismatch, bad options, LoRA ``target_modules`` that match nothing; TypeError for a non-VAE or a
    bad ``lora``. All checks run before ``model`` is modified, and if a later step still fails
    (e.g. peft refuses a module) every change is rolled back, so ``model`` can be used or grafted
    again.
    """
    if isinstance(model, cls) or is_grafted(model):
        raise ValueError("this model is already grafted (its embedding and LM head are gone); graft a fresh backbone")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers causal LM (nn.Module), got {type(model).__name__}")
    _check_vae(vae)
    check_attention(attention)
    frozen = _freeze_set(freeze)
    if train_layers is not None:
        if isinstance(train_layers, bool) or not isinstance(train_layers, int) or train_layers < 0:
            raise ValueError(f"train_layers must be a non-negative int, got {train_layers!r}")
        if "backbone" not in frozen and lora is None:
            raise ValueError("train_layers=k only makes sense with freeze='backbone' (or lora=...): the rest of the body is frozen")
    if lora is not None:
        if not isinstance(lora, LoraConfig):
            raise TypeError(f"lora must be a peft.LoraConfig, got {type(lora).__name__}")
    explicit = adapter is not None
    adapter = adapter if explicit else find_adapter(model)
    if not isinstance(adapter, BackboneAdapter):
        raise TypeError(f"adapter must be a graftlm.plugins.BackboneAdapter instance, got {type(adapter).__name__}")
    if explicit and not adapter.matches(model):
        warnings.warn(
            f"adapter {adapter.name or type(adapter).__name__!r} does not list {describe_model(model)}; using it because "
            "it was passed explicitly (graft's self-test checks the result)", UserWarning, stacklevel=3,
        )
    _check_vocab(model, vae, tokenizer, own_vocab)
    if lora is not None:
        _check_lora_targets(model, lora)
    verified = adapter.verifies(model)
    if not verified:
        _self_test(adapter, model)

    backbone_info = {
        "adapter": adapter.name,
        "model_class": type(model).__name__,
        "reference": getattr(model, "_graftlm_source", None) or getattr(getattr(model, "config", None), "_name_or_path", "") or None,
        "config": model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else None,
    }
    rollback = _Rollback(model)
    try:
        body = adapter.strip(model)
        if not verified:
            _check_stripped(adapter, model, body)
        # where the body sits in the causal LM: LoRA is saved under these names, as peft names it
        backbone_info["body_prefix"] = next((n for n, m in model.named_modules() if m is body), None)
        mark_grafted(model)
        mark_grafted(body)
        if lora is not None:
            _inject_lora(body, lora)
        options = {
            "freeze": sorted(frozen),
            "train_layers": train_layers,
            "lora": lora.to_dict() if lora is not None else None,
            "own_vocab": own_vocab,
            "attention": attention,
        }
        sllm = cls(
            vae, body, adapter,
            termination_gamma=termination_gamma,
            termination_weight=termination_weight,
            graft_options=options,
            backbone_info=backbone_info,
            tokenizer=tokenizer,
        )
        param = next(body.parameters())
        sllm.to(device=param.device)
        for module in (sllm.proj_in, sllm.proj_out, sllm.termination_head):
            module.to(dtype=param.dtype)
        _apply_freezing(sllm, frozen, train_layers, lora)
        apply_attention(sllm)
    except Exception as err:
        rollback.restore()
        wrapped = _rolled_back(err)
        if wrapped is None:
            raise
        raise wrapped from err
    return sllm
