"""Training data for heads: feature sets joined on id, labels, and leak-free splits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MmfeatError
from ..progress import log
from ..store import FeatureSet, feature_matrix
from .design import rows, stack


@dataclasses.dataclass
class Split:
    x: np.ndarray  # or a scipy CSR matrix when a feature set is sparse
    y: np.ndarray  # int class indices
    ids: np.ndarray


@dataclasses.dataclass
class HeadData:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    report: dict  # counts of what was joined, dropped and why


def input_column(head: str, sets: list[FeatureSet]) -> str:
    """What a head reads: ``frames`` for heads over sequences (sequence heads; finetune on a bert set of a
    layer's token states), ``features`` otherwise. Training and prediction ask the same question."""
    layer = sets[0].manifest.get("config", {}).get("frames_layer") if len(sets) == 1 else None
    states = head == "finetune" and layer is not None
    return "frames" if head == "sequence" or states else "features"


def joined_table(sets: list[FeatureSet], missing: str, with_features: bool = True,
                 column: str = "features", max_bytes: float | None = None) -> tuple[pa.Table, np.ndarray, dict]:
    """Join feature sets on id; returns (id/label/split table, concatenated features, report). Without
    features (a head that streams them later) the matrix has no columns. ``column="frames"`` (one set
    with frame sequences): padded sequences (n, T, d + 1), the mask in the last channel."""
    if column == "frames" and (len(sets) != 1 or not sets[0].manifest.get("frame_dim")):
        raise MmfeatError("a sequence head takes one feature set with frame sequences (extract with --set frames=true)")
    names = {}
    for fs in sets:
        key = (fs.manifest["dataset"], fs.manifest["extractor"])
        if key in names and names[key] != fs.config_id:
            raise MmfeatError(f"feature sets with mixed config_ids: {names[key]} and {fs.config_id} of {key[0]}/{key[1]}")
        names[key] = fs.config_id
    columns = ["id", "label", "split", "meta"] + ([column] if with_features else [])
    tables = [fs.table(columns=columns) for fs in sets]
    common = set(tables[0]["id"].to_pylist())
    union = set(common)
    for t in tables[1:]:
        ids = set(t["id"].to_pylist())
        common &= ids
        union |= ids
    report = {"rows_per_set": [t.num_rows for t in tables], "joined": len(common),
              "missing_from_some_set": len(union - common), "missing_policy": missing,
              "blocks": [{"set": fs.name, "dim": fs.dim, "sparse": fs.sparse} for fs in sets]}
    if missing == "error" and union != common:
        raise MmfeatError(f"{len(union - common)} ids are missing from some feature set "
                          f"(e.g. {sorted(union - common)[:5]}); use missing=drop to train on the intersection")
    order = np.array(sorted(common), dtype=object)
    base, parts = None, []
    for fs, t in zip(sets, tables):
        index = {v: i for i, v in enumerate(t["id"].to_pylist())}
        rows = pa.array([index[i] for i in order], pa.int64())
        sub = t.take(rows)
        if column == "frames":
            from .sequence import padded

            parts.append(padded(sub["frames"], fs.manifest["frame_dim"], max_bytes))
        else:
            parts.append(feature_matrix(sub["features"], fs.dim) if with_features else np.zeros((len(order), 0), np.float32))
        if base is None:
            base = sub.select(["id", "label", "split", "meta"])
        elif not sub["split"].equals(base["split"]):
            a, b = base["split"].to_pylist(), sub["split"].to_pylist()
            bad = [order[i] for i in range(len(a)) if a[i] != b[i]][:5]
            raise MmfeatError(f"feature sets disagree on the split of ids {bad}: that would leak between splits")
    return base, stack(parts), report


def _stratified(y: np.ndarray, fraction: float, rng: np.random.Generator, groups: np.ndarray | None = None) -> np.ndarray:
    """Mask choosing ``fraction`` of each class (at least one when the class has two or more).
    With ``groups`` (the clip that audio windows were cut from), whole groups are chosen."""
    if groups is not None:
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        return _stratified(y[first], fraction, rng)[inverse]
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        mask[rng.permutation(idx)[:k]] = True
    return mask


def label_values(table: pa.Table, name: str) -> np.ndarray:
    """Targets named ``name``: the ``label`` column, or another manifest column kept in ``meta``."""
    if name == "label":
        return np.array(table["label"].to_pylist(), dtype=object)
    meta = table["meta"].combine_chunks()
    values = pc.map_lookup(meta, name, "first")
    if values.null_count == len(values):
        keys = sorted(set(meta.keys.to_pylist()))
        raise MmfeatError(f"no label column {name!r} in the feature sets; available: {', '.join(['label'] + keys)}")
    return np.array(values.to_pylist(), dtype=object)


MIN_CLASS_COUNT = 5  # fewer labelled examples than this: the class cannot be split and measured reliably


def load_head_data(joined: tuple[pa.Table, np.ndarray, dict], label: str, seed: int, val_fraction: float,
                   test_fraction: float, group: str | None = None) -> HeadData:
    """Training, validation and test splits for one target (``label``) of a :func:`joined_table`
    result, which several targets share. ``group``: a manifest column (speaker, patient, album)
    whose values never straddle splits; audio windows of one clip are always kept together."""
    table, x, report = joined
    report = dict(report, label=label)
    labels = label_values(table, label)
    splits = np.array(table["split"].to_pylist(), dtype=object)
    ids = np.array(table["id"].to_pylist(), dtype=object)
    key = group or "clip"
    values = pc.map_lookup(table["meta"].combine_chunks(), key, "first")
    if group and values.null_count == len(values):
        keys = sorted(set(table["meta"].combine_chunks().keys.to_pylist()))
        raise MmfeatError(f"group column {group!r} not found; manifest columns: {', '.join(keys) or 'none'}")
    groups = np.array(values.to_pylist(), dtype=object) if values.null_count < len(values) else None
    if groups is not None:
        groups = np.where(groups == None, ids, groups).astype(str)  # noqa: E711 (element-wise)
        report["grouped_by"] = f"{group} (each {group} in one split)" if group else \
            "clip (segments of one clip stay in one split)"
    has_label = np.array([v is not None for v in labels], dtype=bool)
    report["unlabelled_dropped"] = int((~has_label).sum())
    if not has_label.any():
        hint = ("add a 'label' column to the manifest, use root/<label>/<file> folders, or extract with "
                "--label-from-name REGEX (e.g. '(?P<label>\\d+)_') to label items from their file names"
                if label == "label" else f"the manifest's {label!r} column is empty")
        raise MmfeatError(f"no labelled rows: the feature sets carry no {label!r} values; {hint}")
    x, labels, splits, ids = rows(x, has_label), labels[has_label], splits[has_label], ids[has_label]
    groups = groups[has_label] if groups is not None else None
    classes = sorted(set(labels))
    counts = {c: int(n) for c, n in zip(*np.unique(labels.astype(str), return_counts=True))}
    small = {c: n for c, n in counts.items() if n < MIN_CLASS_COUNT}
    if small:
        report["small_classes"] = small
        log.warning("%d class(es) with fewer than %d labelled examples cannot be split into train, validation "
                    "and test reliably: %s", len(small), MIN_CLASS_COUNT,
                    ", ".join(f"{c} ({n})" for c, n in sorted(small.items())[:10]))
    if len(classes) < 2:
        raise MmfeatError(f"a single class ({classes[0]!r}): a classifier needs at least two")
    y = np.searchsorted(np.array(classes, dtype=object), labels).astype(np.int64)
    rng = np.random.default_rng(seed)
    if any(s is not None for s in splits):
        report["split_source"] = "split column"
        report["no_split_dropped"] = int(sum(s is None for s in splits))
        if not (splits == "test").any():
            raise MmfeatError("the split column has no 'test' rows: metrics must come from held-out data")
        if not (splits == "val").any():
            train_idx = np.flatnonzero(splits == "train")
            carve = _stratified(y[train_idx], val_fraction, rng, groups[train_idx] if groups is not None else None)
            splits = splits.copy()
            splits[train_idx[carve]] = "val"
            report["val_carved_from_train"] = int(carve.sum())
    else:
        report["split_source"] = f"stratified random (seed {seed})"
        splits = np.full(len(y), "train", dtype=object)
        test = _stratified(y, test_fraction, rng, groups)
        splits[test] = "test"
        rest = np.flatnonzero(~test)
        splits[rest[_stratified(y[rest], val_fraction / (1 - test_fraction), rng,
                                groups[rest] if groups is not None else None)]] = "val"
    parts = {s: Split(rows(x, splits == s), y[splits == s], ids[splits == s]) for s in ("train", "val", "test")}
    if len(np.unique(parts["train"].y)) < 2:
        raise MmfeatError("the train split holds fewer than two classes")
    report["sizes"] = {s: len(p.y) for s, p in parts.items()}
    return HeadData(parts["train"], parts["val"], parts["test"], classes, report)
