"""``mmfeat audit``: what is wrong with a set's data, found in its stored features. Each finding is a row
(id, kind, score, partner_id, label, suggested_label, split) of ``<set>/_audit/latest.parquet`` (a DuckDB
view, ``<view>_audit``), with a report that shows examples (thumbnails, text, file names):

* ``duplicate``: the same content under several ids (the partner is the first id holding it);
* ``near_duplicate``: a near-copy in the same split (cosine similarity of the features >= ``near_duplicate``);
* ``leak``: a validation or test item with a near-copy in train (it inflates every reported accuracy);
* ``label_error``: a label its out-of-fold probabilities contradict (confident learning; the suggested
  label is the likeliest one);
* ``outlier``: among the items farthest from their k-th neighbour.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import apply_overrides, check_choice, option
from ..nearcopy import TEXT_CANDIDATE, THRESHOLD, centered, confirmed, lexical_pairs
from ..progress import log
from ..store import FeatureStore, files
from ..store.neighbors import SetIndex, exact, view_vectors
from ..store.items import item_keys

FINDINGS = pa.schema([("id", pa.string()), ("kind", pa.string()), ("score", pa.float32()), ("partner_id", pa.string()),
                      ("label", pa.string()), ("suggested_label", pa.string()), ("split", pa.string())])
KINDS = ("duplicate", "near_duplicate", "leak", "label_error", "outlier")


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """What an audit looks for, and how hard."""

    near_duplicate: float = option(THRESHOLD, "cosine similarity of the mean-centred features at or above which "
                                   "two images or clips are near-copies (texts: their words decide; nearcopy.py)")
    k: int = option(10, "neighbours looked at per item; outliers are scored by the distance to the k-th")
    outliers: float = option(0.01, "share of the items flagged as outliers (the farthest from their k-th neighbour)")
    label_folds: int = option(5, "folds of the out-of-fold probabilities label errors are judged on (0: skip)")
    examples: int = option(6, "examples shown per kind of finding in the report")
    method: str = option("auto", "neighbour search: auto (exact up to a size, then the set's index), exact, index")

    def __post_init__(self):
        check_choice("method", self.method, ("auto", "exact", "index"))
        if not (0 < self.near_duplicate <= 1 and 1 <= self.k <= 1000 and 0 <= self.outliers < 0.5):
            raise ValueError("near_duplicate must be in (0, 1], k in 1..1000, outliers in [0, 0.5)")
        if self.label_folds == 1 or self.label_folds < 0:
            raise ValueError("label_folds must be 0 (skip) or >= 2")


def audit(feature_set: str, overrides: dict | None = None, store: str | None = None) -> dict[str, Any]:
    """Audit a set's current view; writes the findings and a report beside the set; returns counts per
    kind, the leakage count, and the paths."""
    cfg = apply_overrides(AuditConfig, overrides)
    st = FeatureStore(store)
    fs = st.resolve(feature_set)
    ids, x, view = view_vectors(fs, "cosine")
    found, scores = _neighbours(fs, centered(x), view, cfg)
    texts = _texts(fs, ids) if fs.manifest.get("modality") == "text" else None
    parts = [_duplicates(fs, ids, view), *_near_copies(ids, view, found, scores, cfg.near_duplicate, texts),
             _outliers(ids, view, scores, cfg.outliers), _label_errors(ids, view, fs, x, cfg.label_folds)]
    findings = pa.concat_tables([p.cast(FINDINGS) for p in parts])
    path = files.join(fs.path, "_audit", "latest.parquet")
    files.write_parquet_atomic(st.fs, path, findings, compression="zstd")
    counts = {kind: int(pc.sum(pc.equal(findings["kind"], kind)).as_py() or 0) for kind in KINDS}
    from .report import audit_report

    report = audit_report(fs, findings, counts, x, view, cfg)
    log.debug("%s: %s", fs.name, ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return {"feature_set": fs.name, "rows": len(ids), "counts": counts, "leaks": counts["leak"], "path": path,
            "report": report, "config": dataclasses.asdict(cfg)}


def _neighbours(fs, x, view: pa.Table, cfg: AuditConfig):
    """Every row's k nearest other rows (positions, cosine similarities)."""
    from ..store.neighbors import _method, _without

    n = x.shape[0]
    k = min(cfg.k, max(n - 1, 1))
    if _method(cfg.method, n, n, hasattr(x, "tocsr")) == "exact":
        return exact(x, x, k, "cosine", exclude_self=True)
    found, scores = SetIndex(fs, "centered").search(x, item_keys(view["id"], view["content"]), x, k + 1)
    return _without(found, scores, np.arange(n), k)


def _rows(ids, kind, score, partner, view: pa.Table, where, suggested=None) -> pa.Table:
    take = pa.array(np.asarray(where, np.int64))
    return pa.table({"id": pa.array(ids[where], pa.string()), "kind": pa.array([kind] * len(where), pa.string()),
                     "score": pa.array(np.asarray(score, np.float32)), "partner_id": pa.array(partner, pa.string()),
                     "label": view["label"].combine_chunks().take(take),
                     "suggested_label": pa.array(suggested if suggested is not None else [None] * len(where), pa.string()),
                     "split": view["split"].combine_chunks().take(take)})


def _duplicates(fs, ids, view: pa.Table) -> pa.Table:
    """Items whose content another item of the view holds too (the same bytes or text under several ids)."""
    contents = np.asarray(view["content"].to_pylist(), dtype=object)
    first: dict[str, int] = {}
    where, partner = [], []
    for i, c in enumerate(contents):
        if c in first and ids[first[c]].split("#")[0] != ids[i].split("#")[0]:
            where.append(i)
            partner.append(ids[first[c]])
        first.setdefault(c, i)
    return _rows(ids, "duplicate", np.ones(len(where)), partner, view, where)


def _texts(fs, ids) -> list:
    """Each row's text (its preview in the items table), to confirm text near-copies by their words."""
    items = fs.items.current()
    preview = dict(zip(items["id"].to_pylist(), items["preview"].to_pylist()))
    return [preview.get(i.split("#")[0]) for i in ids]


def _near_copies(ids, view: pa.Table, found, scores, threshold: float, texts: list | None) -> list[pa.Table]:
    """Near-copy pairs (nearcopy.py): a leak when one of them is in train and the other not, else a
    near_duplicate (each pair once); rows of one audio clip are one item, never each other's copies."""
    split = np.asarray(view["split"].to_pylist(), dtype=object)
    item = np.asarray([i.split("#")[0] for i in ids], dtype=object)
    candidate = min(threshold, TEXT_CANDIDATE) if texts is not None else threshold
    rows, cols = np.nonzero((scores >= candidate) & (found >= 0))
    pairs = [(r, found[r, c], float(scores[r, c])) for r, c in zip(rows, cols)
             if confirmed(float(scores[r, c]), r, found[r, c], texts, threshold)]
    pairs += [(a, b, 1.0) for a, b in lexical_pairs(texts)] if texts is not None else []
    leaks, near, seen = [], [], set()
    for r, j, score in pairs:
        if item[r] == item[j] or (r, j) in seen or (j, r) in seen and {split[r], split[j]} == {split[r]}:
            continue
        pair = {split[r], split[j]}
        if "train" in pair and pair & {"val", "test"}:  # the held-out one leaks (neighbours are not symmetric)
            held, other = (r, j) if split[r] != "train" else (j, r)
            leaks.append((held, score, ids[other]))
        else:
            seen.add((r, j))
            near.append((r, score, ids[j]))
    leaks = list({r: (r, s, p) for r, s, p in sorted(leaks, key=lambda t: t[1])}.values())  # each item once
    return [_rows(ids, kind, [s for _, s, _ in found_], [p for _, _, p in found_], view, [r for r, _, _ in found_])
            for kind, found_ in (("leak", leaks), ("near_duplicate", near))]


def _outliers(ids, view: pa.Table, scores, share: float) -> pa.Table:
    if not share or scores.shape[1] == 0:
        return _rows(ids, "outlier", [], [], view, [])
    distance = 1 - np.nan_to_num(scores[:, -1], nan=-1.0)
    n = max(1, int(round(share * len(ids))))
    where = np.argsort(-distance)[:n]
    return _rows(ids, "outlier", distance[where], [None] * n, view, where)


def _label_errors(ids, view: pa.Table, fs, x, folds: int) -> pa.Table:
    from .labels import label_issues, out_of_fold

    labels = np.asarray(view["label"].to_pylist(), dtype=object)
    has = np.flatnonzero(labels != None)  # noqa: E711 (element-wise)
    classes = sorted(set(labels[has]))
    if not folds or len(classes) < 2 or len(has) < 5 * folds:
        return _rows(ids, "label_error", [], [], view, [])
    y = np.searchsorted(np.array(classes, dtype=object), labels[has]).astype(np.int64)
    probs = out_of_fold(x[has], y, len(classes), folds)
    issues = label_issues(y, probs)
    where = has[issues]
    confidence = probs[issues, y[issues]]
    suggested = np.array(classes, dtype=object)[probs[issues].argmax(1)]
    return _rows(ids, "label_error", 1 - confidence, [None] * len(where), view, where, list(suggested))
