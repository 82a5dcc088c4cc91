"""File names of a SentenceVAE folder (written by `graftlm.vae.checkpoint`, `graftlm.vae.shared_weights`)."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIED_KEY = "decoder.lm_head.weight"  # the same tensor as decoder.embedding.embed.weight when tied
SHARED_NAME = "shared.safetensors"  # optional: the frozen embedding stored once (graftlm.vae.shared_weights)
CARD_NAME = "README.md"  # the model card
OWNED = (CONFIG_NAME, WEIGHTS_NAME, SHARED_NAME, CARD_NAME)  # a save replaces these and keeps other files
