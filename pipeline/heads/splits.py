"""Which rows a head trains, validates and tests on. A manifest's own split wins; other items carry the split
the store assigned them once (pipeline/splits.py), so the test items of a nightly head stay its test items.
A head asks for its own assignment only where the store's cannot serve: ``--group`` (whole speakers or
patients in one split), other fractions than the defaults, or items stored before splits were assigned; it
then keeps the splits its previous run used for the items and groups that run saw (``previous``)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MmfeatError
from ..splits import assign, shares

DEFAULT_SHARES = (0.15, 0.2)  # (val, test): the store assigns with these


def decide(table: pa.Table, labels: np.ndarray, cfg, report: dict, previous: dict[str, str],
           fixed: bool, copy_groups: np.ndarray | None = None) -> np.ndarray:
    """The split of each row of ``table`` (labelled rows only); ``copy_groups``: near-copies kept together."""
    splits = np.array(table["split"].to_pylist(), dtype=object)
    if fixed:
        report["split_source"] = "the base set's splits"
        return splits
    ids = np.array(table["id"].to_pylist(), dtype=object)
    keys = _group_keys(table, ids, cfg.group, report)
    if copy_groups is not None:
        keys = merged(keys, copy_groups)
        report["grouped_by"] = (report.get("grouped_by", "") + " and " if report.get("grouped_by") else "") + \
            "near-copies (each group of copies in one split)"
    given = np.asarray(table["split_given"].to_numpy(zero_copy_only=False), bool)
    own = bool(cfg.group) or copy_groups is not None or (cfg.val_fraction, cfg.test_fraction) != DEFAULT_SHARES
    todo = ~given if own else np.array([s is None for s in splits])
    if todo.any():
        splits = splits.copy()
        splits[todo] = _assign(keys[todo], labels[todo], ids[todo], previous, shares(cfg.val_fraction, cfg.test_fraction))
    report["split_source"] = _source(given, todo, own, cfg.group)
    if copy_groups is not None:
        splits = _copies_together(splits, keys, report)
    if not (splits == "test").any():
        raise MmfeatError("the split column has no 'test' rows: metrics must come from held-out data")
    if not (splits == "val").any():
        train = np.flatnonzero(splits == "train")
        carved = _assign(keys[train], labels[train], ids[train], previous,
                         {"train": 1 - cfg.val_fraction, "val": cfg.val_fraction})
        splits = splits.copy()
        splits[train] = carved
        report["val_carved_from_train"] = int((np.array(carved) == "val").sum())
    return splits


def _copies_together(splits: np.ndarray, keys: np.ndarray, report: dict) -> np.ndarray:
    """Where a split column put copies in different splits, the whole group joins the most held-out of them
    (test, then val): training loses the copy, the test set keeps its item."""
    rank = {"test": 0, "val": 1, "train": 2}
    best: dict = {}
    for key, split in zip(keys, splits):
        if split in rank and rank[split] < rank.get(best.get(key), 3):
            best[key] = split
    moved = np.array([s in rank and best[k] != s for k, s in zip(keys, splits)])
    if moved.any():
        splits = splits.copy()
        splits[moved] = [best[k] for k in keys[moved]]
        report["copies_moved_to_held_out"] = int(moved.sum())
    return splits


def merged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One key per row such that rows sharing a key in ``a`` or in ``b`` share one (connected components)."""
    parent: dict = {}

    def root(k):
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for x, y in zip(a, b):
        parent[root(("a", x))] = root(("b", y))
    return np.asarray([str(root(("a", x))) for x in a], dtype=object)


def _group_keys(table: pa.Table, ids: np.ndarray, group: str | None, report: dict) -> np.ndarray:
    """What is assigned as a unit: the ``group`` column's value, the clip audio windows were cut from, or
    the row's id."""
    meta = table["meta"].combine_chunks()
    values = pc.map_lookup(meta, group or "clip", "first")
    if group and values.null_count == len(values):
        keys = sorted(set(meta.keys.to_pylist()))
        raise MmfeatError(f"group column {group!r} not found; manifest columns: {', '.join(keys) or 'none'}")
    if values.null_count == len(values):
        return ids
    report["grouped_by"] = f"{group} (each {group} in one split)" if group else \
        "clip (segments of one clip stay in one split)"
    found = np.array(values.to_pylist(), dtype=object)
    return np.where(found == None, ids, found).astype(str)  # noqa: E711 (element-wise)


def _assign(keys: np.ndarray, labels: np.ndarray, ids: np.ndarray, previous: dict[str, str],
            targets: dict[str, float]) -> list[str]:
    """Assign whole keys (groups), stratified by their label counts; a key keeps the split its items had in
    the previous run (when ``targets`` offers it)."""
    unique, inverse = np.unique(keys.astype(str), return_inverse=True)
    histograms: list[dict] = [{} for _ in unique]
    kept: dict[str, str] = {}
    for k, label, item in zip(inverse, labels, ids):
        histograms[k][label] = histograms[k].get(label, 0) + 1
        if previous.get(item) in targets:
            kept.setdefault(unique[k], previous[item])
    grouped = any(sum(h.values()) > 1 for h in histograms)
    chosen = assign(list(unique), histograms if grouped else [next(iter(h)) for h in histograms], kept, targets)
    return list(np.array(chosen, dtype=object)[inverse])


def _source(given: np.ndarray, todo: np.ndarray, own: bool, group: str | None) -> str:
    parts = []
    if (given & ~todo).any():
        parts.append("split column")
    if own and todo.any():
        parts.append(f"assigned by this head per {group}" if group else "assigned by this head (its fractions)")
    elif todo.any():
        parts.append("assigned by this head (items stored before splits were assigned)")
    if (~given & ~todo).any():
        parts.append("assigned once per item by the store")
    return " + ".join(parts) or "split column"
