"""The SentenceVAE: segment tokens → one vector → the same tokens."""

from graftlm.vae.config import SentenceVAEConfig
from graftlm.vae.model import DecodeOutput, SentenceVAE, SentenceVAEOutput

__all__ = ["SentenceVAE", "SentenceVAEConfig", "DecodeOutput", "SentenceVAEOutput"]
