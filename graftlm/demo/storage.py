"""Disk use of a demo run folder (its VAEs store their frozen embedding once, and the SentenceLLM's
VAE hard-links the SVAE's file: `graftlm.vae.shared_weights`)."""

from __future__ import annotations

import os


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes used by the files under ``path``, each hard-linked file counted once (like ``du``)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
