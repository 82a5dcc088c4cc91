"""OPT (all sizes, including OPT-350M's project_in/out) as a graftlm backbone.

Kept beside the generic adapter (which grafts OPT too, with ``OPTModel`` as the body) because its
body is ``model.model.decoder``: saved SentenceLLMs and the authors' checkpoints
(`graftlm.sllm.official`) name the body's weights relative to the decoder.
"""

from __future__ import annotations

from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl


class OPTAdapter(BackboneAdapter):
    """Body = ``model.model.decoder`` without ``embed_tokens``; the LM head is dropped.

    The decoder itself adds OPT's learned positions (from our explicit per-row ``position_ids``),
    applies ``project_in`` (word_embed_proj_dim → hidden), its final layer norm and ``project_out``,
    so the body's input and output width is ``word_embed_proj_dim``.
    """

    name = "opt"
    model_types = ("opt",)
    verified_model_types = model_types

    def body(self, model: nn.Module) -> nn.Module:
        return self._decoder(model)

    @staticmethod
    def _decoder(model: nn.Module) -> nn.Module:
        inner = getattr(model, "model", model)  # OPTForCausalLM -> OPTModel
        decoder = getattr(inner, "decoder", None)
        if decoder is None:
            raise TypeError(f"expected an OPTForCausalLM or OPTModel, got {type(model).__name__}")
        return decoder

    def strip(self, model: nn.Module) -> nn.Module:
        decoder = self._decoder(model)
        decoder.embed_tokens = None
        if hasattr(model, "lm_head"):
            model.lm_head = None
        return decoder

    def hidden_size(self, body: nn.Module) -> int:
        return int(body.config.word_embed_proj_dim)


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [OPTAdapter]
