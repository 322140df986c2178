"""Heads: classifiers trained on stored features, one registered kind per module (registry.py).

Names are imported on first use, so that listing heads or reading a card does not load torch."""
from __future__ import annotations

import importlib

_EXPORTS = {"HeadConfig": "config", "HeadKind": "registry", "TrainJob": "registry", "TrainedHead": "registry",
            "register_head": "registry", "kinds": "registry", "head_names": "registry", "train_head": "train",
            "train_heads": "train", "predict": "prediction", "predict_source": "prediction", "list_heads": "listing"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.heads' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
