"""The ``README.md`` model card that ``save_pretrained`` writes: Hub metadata (YAML front matter
through huggingface_hub's `ModelCardData`) and what the model is, in prose and tables.

``info`` (optional, from the caller: training knows it, the model does not) may hold ``data`` (a
description of the training text), ``evaluation`` ({metric: value}) and ``notes``.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCardData

PAPER = "https://arxiv.org/abs/2408.00655"


def _table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def _known(info: dict[str, Any] | None) -> str:
    info = info or {}
    parts = [f"## Training data\n\n{info.get('data') or 'Not recorded.'}"]
    evaluation = info.get("evaluation") or {}
    if evaluation:
        rows = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in evaluation.items()}
        parts.append("## Evaluation\n\n" + _table(rows))
    else:
        parts.append("## Evaluation\n\nNo evaluation figures were recorded with this save.")
    if info.get("notes"):
        parts.append(f"## Notes\n\n{info['notes']}")
    return "\n\n".join(parts)


def _front_matter(tags: list[str], base_model: str | None) -> str:
    data = ModelCardData(library_name="graftlm", tags=tags, base_model=base_model, pipeline_tag="text-generation"
                         if "sentence-llm" in tags else None)
    return f"---\n{data.to_yaml()}\n---\n"


def vae_card(config: Any, info: dict[str, Any] | None = None) -> str:
    """Model card of a SentenceVAE with ``config`` (a SentenceVAEConfig)."""
    fields = config.fields_dict()
    fields.pop("extra", None)
    body = (
        "# SentenceVAE (graftlm)\n\n"
        f"A sentence autoencoder ([SentenceVAE]({PAPER})): the encoder maps a segment's tokens to one vector, "
        "the decoder reproduces the tokens from it.\n\n"
        "```python\nfrom graftlm.vae import SentenceVAE\nvae = SentenceVAE.from_pretrained(\"<this folder or repo>\")\n```\n\n"
        "## Configuration\n\n" + _table(fields) + "\n\n" + _known(info) + "\n"
    )
    return _front_matter(["sentence-vae", "graftlm"], None) + "\n" + body


def sllm_card(*, backbone: str | None, adapter: str, vae_config: Any, graft: dict[str, Any],
              info: dict[str, Any] | None = None) -> str:
    """Model card of a SentenceLLM grafted onto ``backbone``."""
    vae = vae_config.fields_dict()
    vae.pop("extra", None)
    lora = graft.get("lora") or {}
    graft_rows = {"backbone": backbone or "saved with its weights", "adapter": adapter,
                  "freeze": graft.get("freeze") or "none", "train_layers": graft.get("train_layers"),
                  "LoRA": f"rank {lora.get('r')} on {lora.get('target_modules')}" if lora else "none",
                  "attention": graft.get("attention") or "causal"}
    body = (
        "# SentenceLLM (graftlm)\n\n"
        f"A decoder-only LLM that reads and predicts one sentence vector per step ([SentenceVAE]({PAPER}) "
        f"grafted onto `{backbone or 'a causal LM'}`).\n\n"
        "```python\nfrom graftlm.sllm import SentenceLLM\nmodel = SentenceLLM.from_pretrained(\"<this folder or repo>\")\n"
        "print(model.generate(\"A first sentence.\"))\n```\n\n"
        "## Graft\n\n" + _table(graft_rows) + "\n\n## SentenceVAE\n\n" + _table(vae) + "\n\n" + _known(info) + "\n"
    )
    return _front_matter(["sentence-llm", "graftlm"], backbone if backbone and ":" not in backbone else None) + "\n" + body


def card_for(model: Any, info: dict[str, Any] | None = None) -> str:
    """The card `save_pretrained` writes for ``model`` (a SentenceVAE or a SentenceLLM)."""
    if hasattr(model, "graft_options"):
        return sllm_card(backbone=model.backbone_info.get("reference"), adapter=model.adapter.name,
                         vae_config=model.vae.config, graft=model.graft_options, info=info)
    return vae_card(model.config, info)
