"""Near-copies across a head's splits (pipeline/nearcopy.py says when two items are): how many validation and
test items have a near-copy in train, counted in every card and report since they inflate every reported
accuracy; and, with ``copies_in_one_split``, groups of near-copies kept together like ``--group``."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..nearcopy import EXACT_BUDGET, centered, leaks, lexical_pairs, standardizer
from ..store.neighbors import exact


def texts_of(sets, ids) -> list | None:
    """The texts (their previews) of ``ids`` when the first set holds texts, else None."""
    if sets[0].manifest.get("modality") != "text":
        return None
    items = sets[0].items.current()
    preview = dict(zip(items["id"].to_pylist(), items["preview"].to_pylist()))
    return [preview.get(str(i).split("#")[0]) for i in ids]


def count(data, sets) -> dict:
    """{"val": n, "test": n, "examples": [[held id, train id], ...]} (or why it was not counted)."""
    x = data.train.x
    if getattr(x, "ndim", 2) != 2 or x.shape[1] == 0:
        return {"counted": False, "why": "the head reads sequences or streams its features: mmfeat audit counts them"}
    out: dict = {"counted": True, "examples": []}
    for part in ("val", "test"):
        held = getattr(data, part)
        if len(held.y) * len(data.train.y) > EXACT_BUDGET:
            return {"counted": False, "why": "too many rows to compare exactly here: mmfeat audit counts them"}
        found = leaks(x, held.x, texts_of(sets, data.train.ids), texts_of(sets, held.ids))
        found += _lexical(sets, data.train.ids, held.ids, {h for h, _, _ in found})
        out[part] = len(found)
        out["examples"] += [[str(held.ids[h]), str(data.train.ids[t])] for h, t, _ in found[:5]]
    return out


def _lexical(sets, train_ids, held_ids, known: set) -> list[tuple[int, int, float]]:
    train_texts, held_texts = texts_of(sets, train_ids), texts_of(sets, held_ids)
    if train_texts is None:
        return []
    pairs = lexical_pairs(list(held_texts) + list(train_texts))
    n = len(held_texts)
    out = {}
    for a, b in pairs:
        if a < n <= b and a not in known:
            out.setdefault(a, (a, b - n, 1.0))
    return list(out.values())


def copy_groups(x, ids: np.ndarray, texts: list | None, k: int = 5) -> np.ndarray:
    """A group key per row: rows joined by near-copy pairs share one (the first id of their group)."""
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if getattr(x, "ndim", 2) == 2 and x.shape[1] and len(ids) ** 2 <= EXACT_BUDGET:
        from ..nearcopy import confirmed

        c = centered(x, None if hasattr(x, "tocsr") else standardizer(x))
        found, scores = exact(c, c, min(k, len(ids) - 1), "cosine", exclude_self=True)
        for r, cols in enumerate(found):
            for col, j in enumerate(cols):
                if j >= 0 and confirmed(float(scores[r, col]), r, int(j), texts, 0.9):
                    parent[root(r)] = root(int(j))
    for a, b in lexical_pairs(texts) if texts is not None else []:
        parent[root(a)] = root(b)
    return np.asarray([str(ids[root(i)]) for i in range(len(ids))], dtype=object)


def table_texts(sets, table: pa.Table) -> list | None:
    return texts_of(sets, table["id"].to_pylist())
