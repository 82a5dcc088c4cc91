"""File names of a SentenceVAE folder (written by `graftlm.vae.checkpoint`, `graftlm.vae.shared_weights`)."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIED_KEY = "decoder.lm_head.weight"  # the same tensor as decoder.embedding.embed.weight when tied
