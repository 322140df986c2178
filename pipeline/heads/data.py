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
from .frames import padded


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


def joined_table(sets: list[FeatureSet], missing: str, with_features: bool = True, column: str = "features",
                 max_bytes: float | None = None, snapshot: pa.Table | None = None) -> tuple[pa.Table, np.ndarray, dict]:
    """Join feature sets on id; returns (id/content/label/split/meta table, concatenated features, report).
    Without features (a head that streams them later) the matrix has no columns. ``column="frames"``: padded
    sequences (n, T, d + 1), the mask in the last channel. ``snapshot`` (a head run's items): the rows it
    names by (id, content), with its labels and splits, whether or not they are current."""
    _check_configs(sets)
    columns = ["id", "content", "label", "split", "meta"] + ([column] if with_features else [])
    tables = [fs.table(columns=columns) if snapshot is None else fs.rows_for(_pins(snapshot, fs), columns)
              for fs in sets]
    order, report = _common_ids(sets, tables, missing)
    if snapshot is not None:
        report["pinned_rows_lost"] = _lost_pins(sets, tables, snapshot)
    base, parts, given = None, [], None
    for fs, t in zip(sets, tables):
        sub = t.take(pc.index_in(pa.array(order, pa.string()), value_set=t["id"]))
        if column == "frames":
            parts.append(padded(sub["frames"], fs.manifest["frame_dim"], max_bytes))
        else:
            parts.append(feature_matrix(sub["features"], fs.dim) if with_features else np.zeros((len(order), 0), np.float32))
        mine = pc.is_in(sub["id"], value_set=fs.items.given_splits() if snapshot is None else pa.array([], pa.string()))
        if base is None:
            base, given = sub.select(["id", "content", "label", "split", "meta"]), mine
        else:
            base = _agreeing_splits(base, sub, given, mine, order)
            given = pc.and_(given, mine)
    return base.append_column("split_given", given), stack(parts), report


def _agreeing_splits(base: pa.Table, sub: pa.Table, given: pa.Array, mine: pa.Array, order: np.ndarray) -> pa.Table:
    """Joined sets must agree on the splits their manifests give (else a test item of one trains through the
    other: refused); where a store assigned them differently (datasets of their own), the head assigns."""
    a, b = np.array(base["split"].to_pylist(), dtype=object), np.array(sub["split"].to_pylist(), dtype=object)
    both = np.asarray(pc.and_(given, mine).to_numpy(zero_copy_only=False), bool)
    clash = both & (a != b)
    if clash.any():
        raise MmfeatError(f"feature sets disagree on the split of ids {list(order[clash][:5])}: that would leak "
                          "between splits")
    a[a != b] = None
    return base.set_column(base.schema.get_field_index("split"), "split", pa.array(a, pa.string()))


def _check_configs(sets: list[FeatureSet]) -> None:
    names = {}
    for fs in sets:
        key = (fs.manifest["dataset"], fs.manifest["extractor"])
        if key in names and names[key] != fs.config_id:
            raise MmfeatError(f"feature sets with mixed config_ids: {names[key]} and {fs.config_id} of {key[0]}/{key[1]}")
        names[key] = fs.config_id


def _lost_pins(sets, tables, snapshot: pa.Table) -> int:
    """Rows the snapshot pins that the store no longer holds (a damaged part whose items have since left
    the manifest cannot be extracted again): said, since the retrain then differs from the run."""
    lost = sum(_pins(snapshot, fs).num_rows - t.num_rows for fs, t in zip(sets, tables))
    if lost:
        log.warning("%d row(s) the head run trained on are gone from the store (a damaged part whose items "
                    "have left the manifest): this retrain is not the run's exact data", lost)
    return lost


def _pins(snapshot: pa.Table, fs: FeatureSet) -> pa.Table:
    rows = snapshot.filter(pc.equal(snapshot["config_id"], fs.config_id))
    if rows.num_rows == 0:
        raise MmfeatError(f"the head's snapshot pins no rows of {fs.name}")
    return rows


def _common_ids(sets, tables, missing: str) -> tuple[np.ndarray, dict]:
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
    return np.array(sorted(common), dtype=object), report


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


def load_head_data(joined: tuple[pa.Table, np.ndarray, dict], label: str, cfg, previous: dict[str, str] | None = None,
                   fixed_splits: bool = False, copy_groups: np.ndarray | None = None) -> HeadData:
    """Training, validation and test splits for one target (``label``) of a :func:`joined_table` result,
    which several targets share. Splits: see :func:`heads.splits.decide` (``previous``: the splits a
    head's last run used, kept for the items it saw; ``fixed_splits``: the table's splits as they are)."""
    from .splits import decide

    table, x, report = joined
    report = dict(report, label=label)
    labels = label_values(table, label)
    has_label = np.array([v is not None for v in labels], dtype=bool)
    report["unlabelled_dropped"] = int((~has_label).sum())
    if not has_label.any():
        hint = ("add a 'label' column to the manifest, use root/<label>/<file> folders, or extract with "
                "--label-from-name REGEX (e.g. '(?P<label>\\d+)_') to label items from their file names"
                if label == "label" else f"the manifest's {label!r} column is empty")
        raise MmfeatError(f"no labelled rows: the feature sets carry no {label!r} values; {hint}")
    table, x, labels = table.filter(pa.array(has_label)), rows(x, has_label), labels[has_label]
    copy_groups = copy_groups[has_label] if copy_groups is not None else None
    classes = _classes(labels, report)
    y = np.searchsorted(np.array(classes, dtype=object), labels).astype(np.int64)
    splits = decide(table, labels, cfg, report, previous or {}, fixed_splits, copy_groups)
    ids = np.array(table["id"].to_pylist(), dtype=object)
    parts = {s: Split(rows(x, splits == s), y[splits == s], ids[splits == s]) for s in ("train", "val", "test")}
    if len(np.unique(parts["train"].y)) < 2:
        raise MmfeatError("the train split holds fewer than two classes")
    report["sizes"] = {s: len(p.y) for s, p in parts.items()}
    return HeadData(parts["train"], parts["val"], parts["test"], classes, report)


def _classes(labels: np.ndarray, report: dict) -> list[str]:
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
    return classes
