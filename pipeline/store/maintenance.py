"""Reclaiming space: ``gc`` drops rows that left the current view (and that no head pins), ``remove`` deletes
datasets, sets and heads. Both take the lease of every set they touch, and ``--dry-run`` reports exactly
what the real run would do."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .catalog import FeatureStore, check_name
from .featureset import FeatureSet
from .items import item_keys
from .lease import held
from .pins import pinned_keys


def gc(store: FeatureStore, dry_run: bool = False) -> dict[str, Any]:
    """Rewrite or delete shards holding rows (and rejects) outside the current view that no head run pins:
    removed items, old contents, duplicate ids; then what killed writers left (staging files, orphan parts,
    plans). Each set is done under its lease: a set an extract is writing is skipped and named."""
    report: dict[str, Any] = {"sets": 0, "rows_dropped": 0, "rows_pinned": 0, "rejects_dropped": 0,
                              "shards_rewritten": 0, "shards_deleted": 0, "debris_deleted": 0, "skipped_busy": []}
    pins = pinned_keys(store)
    for fs in store.feature_sets():
        report["sets"] += 1
        try:
            with held(fs.fs, fs.path, "gc"):  # a writer planning against shards gc rewrites would miss them
                _gc_set(fs, report, dry_run, pins.get(fs.config_id, pa.array([], pa.string())))
                report["debris_deleted"] += sum(fs.sweep_debris(dry_run).values())
        except StoreError:
            report["skipped_busy"].append(fs.name)
    return report


def _gc_set(fs: FeatureSet, report: dict[str, Any], dry_run: bool, pinned: pa.Array) -> None:
    current = fs.items.current()
    items = item_keys(current["id"], current["content"])
    extracted = fs.keys("part")
    extracted_keys = item_keys(extracted["id"], extracted["content"])
    seen_rows: set[str] = set()
    seen_rejects: set[str] = set()
    for shard in sorted(fs.done_markers()):
        part = pq.read_table(fs.shard_path(shard), filesystem=fs.fs)
        rejects = pq.read_table(fs.shard_path(shard, "rejects"), filesystem=fs.fs)
        live = pc.is_in(item_keys(part["item"], part["content"]), value_set=items)
        pin = pc.is_in(item_keys(part["id"], part["content"]), value_set=pinned)
        keep = _first(item_keys(part["id"], part["content"]), pc.or_(live, pin), seen_rows)
        report["rows_pinned"] += int((keep & ~live.to_numpy(zero_copy_only=False)).sum())
        rkeys = item_keys(rejects["id"], rejects["content"])
        rcurrent = pc.and_(pc.is_in(rkeys, value_set=items), pc.invert(pc.is_in(rkeys, value_set=extracted_keys)))
        rkeep = _first(rkeys, rcurrent, seen_rejects)
        if keep.all() and rkeep.all():
            continue
        report["rows_dropped"] += int((~keep).sum())
        report["rejects_dropped"] += int((~rkeep).sum())
        report["shards_rewritten" if keep.any() or rkeep.any() else "shards_deleted"] += 1
        if not dry_run:
            _rewrite(fs, shard, part.filter(pa.array(keep)), rejects.filter(pa.array(rkeep)))


def _rewrite(fs: FeatureSet, shard: str, part: pa.Table, rejects: pa.Table) -> None:
    if part.num_rows or rejects.num_rows:
        n_in = (len(pc.unique(part["item"])) if part.num_rows else 0) + rejects.num_rows
        new = hashlib.sha256(f"{shard}:gc:{part.num_rows}:{rejects.num_rows}".encode()).hexdigest()[:16]
        fs.write_shard(new, part.replace_schema_metadata(None), rejects.replace_schema_metadata(None), n_in,
                       {"compacted_from": shard})
    # Marker first: from then on readers ignore the old files, whatever happens next.
    files.delete_if_exists(fs.fs, files.join(fs.path, "_done", f"{shard}.json"))
    files.delete_if_exists(fs.fs, fs.shard_path(shard))
    files.delete_if_exists(fs.fs, fs.shard_path(shard, "rejects"))


def _first(keys: pa.Array, wanted: pa.Array, seen: set[str]) -> np.ndarray:
    """Mask of rows that are wanted and the first row of their (id, content) key across the set's shards: an
    item's current row and the older content a head pins are both kept; a row two writers stored, once."""
    mask = wanted.to_numpy(zero_copy_only=False).copy()
    for i, key in enumerate(keys.to_pylist()):
        if mask[i]:
            mask[i] = key not in seen
            seen.add(key)
    return mask


def remove(store: FeatureStore, target: str, dry_run: bool = False) -> str:
    """Delete ``DATASET`` (its sets, items, log and fitted state), ``DATASET/EXTRACTOR[-CONFIG]`` (one set)
    or ``head:NAME`` (a head under ``<store>/_heads``: its pins are released; a head registered from
    ``--out`` loses its registration, its folder stays). Sets are removed under their leases: a set an
    extract is writing is refused. Returns the path removed (or that would be, with ``dry_run``)."""
    if target.startswith("head:"):
        return _remove_head(store, check_name("head", target[5:]), dry_run)
    sets = [store.resolve(target)] if "/" in target else store.feature_sets(check_name("dataset", target))
    path = sets[0].path if "/" in target else store.dataset(target).path
    if not files.exists(store.fs, path):
        raise StoreError(f"nothing to remove: {target} is not in {store.uri}")
    if dry_run:
        return path
    with _all_held(sets):
        files.delete_if_exists(store.fs, path)
    return path


def _remove_head(store: FeatureStore, name: str, dry_run: bool) -> str:
    import os

    path = files.join(store.root, "_heads", name)
    local = isinstance(store.fs, files.pafs.LocalFileSystem)
    if not (os.path.lexists(path) if local else files.exists(store.fs, path)):
        raise StoreError(f"nothing to remove: head {name} is not in {store.uri}")
    if not dry_run:
        if local and os.path.islink(path):
            os.remove(path)  # a registered --out head: its folder is the user's
        else:
            files.delete_if_exists(store.fs, path)
    return path


class _all_held:
    """Every set's lease at once (all or none)."""

    def __init__(self, sets: list[FeatureSet]):
        self.sets, self.stack = sets, None

    def __enter__(self):
        import contextlib

        self.stack = contextlib.ExitStack()
        try:
            for fs in self.sets:
                self.stack.enter_context(held(fs.fs, fs.path, "rm"))
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self.stack.close()
        return False
