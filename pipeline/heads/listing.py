"""The heads a store lists: ``<store>/_heads/<name>`` (heads written with ``--out`` are registered there)."""
from __future__ import annotations

import json
import os

from ..errors import MmfeatError
from ..store import FeatureStore
from .artifacts import resolve_head_dir
from .remote import heads_root, is_remote, names


def list_heads(store: str | None = None) -> list[dict]:
    """The heads under ``<store>/_heads``: name, latest run, label, feature sets and test metrics (read from
    their cards: no weights loaded)."""
    st = FeatureStore(store)
    root = heads_root(st)
    out = []
    listed = names(st) if is_remote(st) else sorted(n for n in os.listdir(root) if not n.startswith(".")) \
        if os.path.isdir(root) else []
    for name in listed:
        try:
            run = resolve_head_dir(name if is_remote(st) else os.path.join(root, name), st)
            with open(os.path.join(run, "head.json")) as f:
                card = json.load(f)
        except (MmfeatError, OSError, ValueError):
            continue
        m = card.get("metrics", {})
        out.append({"name": name, "run": run, "head": card.get("head"), "label": card.get("label"),
                    "feature_sets": [s.get("name") for s in card.get("feature_sets", [])],
                    "accuracy": m.get("accuracy"), "accuracy_ci95": m.get("accuracy_ci95"),
                    "macro_f1": m.get("macro_f1"), "n_test": m.get("n_test"),
                    "location": os.path.realpath(os.path.join(root, name)) if not is_remote(st) else None})
    return out
