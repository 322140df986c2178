"""Reclaiming space: ``gc`` drops rows that left the current view, ``remove`` deletes datasets, sets, heads."""
from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .catalog import FeatureStore
from .featureset import FeatureSet
from .items import item_keys

def gc(store: FeatureStore, dry_run: bool = False) -> dict[str, Any]:
    """Rewrite or delete shards holding rows (and rejects) outside the current view: removed items,
    old contents, duplicate ids; then what killed writers left (staging files, orphan parts, plans).
    Each set is done under its lease: a set an extract is writing is skipped and named."""
    from .lease import Lease

    report: dict[str, Any] = {"sets": 0, "rows_dropped": 0, "rejects_dropped": 0, "shards_rewritten": 0,
                              "shards_deleted": 0, "debris_deleted": 0, "skipped_busy": []}
    for fs in store.feature_sets():
        report["sets"] += 1
        lease = Lease(fs.fs, fs.path)
        try:
            lease.acquire()  # a writer planning against shards that gc rewrites would miss them
        except StoreError:
            report["skipped_busy"].append(fs.name)
            continue
        try:
            _gc_set(fs, report, dry_run)
            if not dry_run:
                report["debris_deleted"] += sum(fs.sweep_debris().values())
        finally:
            lease.release()
    return report


def _gc_set(fs: FeatureSet, report: dict[str, int], dry_run: bool) -> None:
    current = fs.items.current()
    items = item_keys(current["id"], current["content"])
    seen_rows: set[str] = set()
    extracted = fs.keys("part")
    extracted_keys = item_keys(extracted["id"], extracted["content"])
    seen_rejects: set[str] = set()
    for shard, marker in sorted(fs.done_markers().items()):
        part = pq.read_table(fs.shard_path(shard), filesystem=fs.fs)
        rejects = pq.read_table(fs.shard_path(shard, "rejects"), filesystem=fs.fs)
        keep = _first_current(part["id"], item_keys(part["item"], part["content"]), items, seen_rows)
        rkeys = item_keys(rejects["id"], rejects["content"])
        rcurrent = pc.and_(pc.is_in(rkeys, value_set=items), pc.invert(pc.is_in(rkeys, value_set=extracted_keys)))
        rkeep = _first_current(rejects["id"], rkeys, items, seen_rejects, rcurrent)
        if keep.all() and rkeep.all():
            continue
        report["rows_dropped"] += int((~keep).sum())
        report["rejects_dropped"] += int((~rkeep).sum())
        if dry_run:
            continue
        part, rejects = part.filter(pa.array(keep)), rejects.filter(pa.array(rkeep))
        if part.num_rows or rejects.num_rows:
            n_in = (len(pc.unique(part["item"])) if part.num_rows else 0) + rejects.num_rows
            new = hashlib.sha256(f"{shard}:gc:{part.num_rows}:{rejects.num_rows}".encode()).hexdigest()[:16]
            fs.write_shard(new, part.replace_schema_metadata(None), rejects.replace_schema_metadata(None), n_in,
                           {"compacted_from": shard})
            report["shards_rewritten"] += 1
        else:
            report["shards_deleted"] += 1
        # Marker first: from then on readers ignore the old files, whatever happens next.
        files.delete_if_exists(fs.fs, files.join(fs.path, "_done", f"{shard}.json"))
        files.delete_if_exists(fs.fs, fs.shard_path(shard))
        files.delete_if_exists(fs.fs, fs.shard_path(shard, "rejects"))


def _first_current(ids: pa.ChunkedArray, keys: pa.Array, items: pa.Array, seen: set[str],
                   current: pa.Array | None = None) -> np.ndarray:
    """Mask of rows that are current and the first row of their id across the set's shards."""
    current = pc.is_in(keys, value_set=items) if current is None else current
    mask = current.to_numpy(zero_copy_only=False).copy()
    for i, row_id in enumerate(ids.to_pylist()):
        if mask[i]:
            mask[i] = row_id not in seen
            seen.add(row_id)
    return mask


def remove(store: FeatureStore, target: str) -> str:
    """Delete ``DATASET`` (its sets, items and fitted state), ``DATASET/EXTRACTOR[-CONFIG]`` (one set)
    or ``head:NAME`` (a head under ``<store>/_heads``). Returns the path removed."""
    if target.startswith("head:"):
        from .catalog import check_name

        path = files.join(store.root, "_heads", check_name("head", target[5:]))
    elif "/" in target:
        path = store.resolve(target).path
    else:
        path = store.dataset(target).path
    if not files.delete_if_exists(store.fs, path):
        raise StoreError(f"nothing to remove: {target} is not in {store.uri}")
    return path


_SET_ENTRIES = {"_manifest.json", "_done", "_plan", "_predictions", "_lease.json"}


def fsck(store: FeatureStore, repair: bool = False) -> list[dict[str, str]]:
    """Check every set: damaged manifests and markers, markers naming missing or symlinked parts,
    parts whose footer names another config or schema, orphan and foreign files. With ``repair``,
    drop the broken shards (their items are extracted again by the next run) and the debris."""
    from .lease import Lease

    findings: list[dict[str, str]] = []

    def found(path: str, problem: str, fix: str, action=None) -> None:
        findings.append({"path": path, "problem": problem, "fix": fix, "repaired": bool(repair and action)})
        if repair and action:
            action()

    for fs in store.feature_sets():
        markers = fs.done_markers()
        for shard, why in fs.problems:
            found(fs.path, why, "drop the shard", lambda s=shard, f=fs: _drop_shard(f, s))
        for shard in markers:
            try:
                fs._checked_footer(fs.shard_path(shard))
            except StoreError as exc:
                found(fs.shard_path(shard), str(exc), "drop the shard", lambda s=shard, f=fs: _drop_shard(f, s))
        held = Lease(fs.fs, fs.path).holder()
        if held is not None and held["expires"] > time.time():
            continue  # a writer may be running: its staging files and uncommitted parts are not debris
        for name, kind in files.list_entries(fs.fs, fs.path).items():
            shard = name.split("-", 1)[-1].rsplit(".", 1)[0]
            expected = name in _SET_ENTRIES or (name.startswith(("part-", "rejects-")) and shard in markers)
            if not expected:
                what = "staging file" if name.startswith(".staging-") else \
                    "orphan part (no done marker)" if name.startswith(("part-", "rejects-")) else f"foreign {kind}"
                found(files.join(fs.path, name), what, "delete it",
                      lambda p=files.join(fs.path, name): files.delete_if_exists(fs.fs, p))
    for path, why in store.problems:
        found(path, why, f"restore {path}/_manifest.json or remove the set (mmfeat rm)")
    return findings


def _drop_shard(fs: FeatureSet, shard: str) -> None:
    files.delete_if_exists(fs.fs, files.join(fs.path, "_done", f"{shard}.json"))
    for kind in ("part", "rejects"):
        files.delete_if_exists(fs.fs, fs.shard_path(shard, kind))
