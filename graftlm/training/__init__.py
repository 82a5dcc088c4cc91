"""Training at scale: recipes, the accelerate trainer, the streaming data pipeline, evaluation.

Public names (imported lazily):
``TrainConfig``, ``load_recipe``, ``smoke_config`` (recipes), ``Trainer``, ``TrainingDiverged``,
``TrainResult`` (the loop), ``train`` (recipe → trained run), ``read_corpus`` (corpus readers).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "graftlm.training.recipes",
    "load_recipe": "graftlm.training.recipes",
    "smoke_config": "graftlm.training.recipes",
    "Trainer": "graftlm.training.trainer",
    "TrainingDiverged": "graftlm.training.trainer",
    "TrainResult": "graftlm.training.trainer",
    "train": "graftlm.training.pipeline",
    "read_corpus": "graftlm.training.data",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graftlm.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
