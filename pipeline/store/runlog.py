"""A dataset's runs: what each published run changed (which ids were added, removed, re-labelled, re-split or
re-extracted), kept as ``<dataset>/_log/<run>.changes.parquet`` with the run's record in its metadata, and
the items each of the last few runs published (``<run>.items.parquet``, to restore a damaged items table).
The log is the chain of runs from the current one back through each record's ``previous_run``; a record
of a run that never published (killed between writing its log and switching the items) is not on it."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import files

RECORD_KEY = b"mmfeat.run"
KEEP_SNAPSHOTS = 3  # the items of the last runs kept (a damaged items table is restored from the newest)
CHANGES_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("change", pa.string()),
                            pa.field("before", pa.string()), pa.field("after", pa.string())])
COUNTED = ("added", "removed", "content_changed", "metadata_changed")


def changes(previous: pa.Table, items: pa.Table) -> pa.Table:
    """One row per id and kind of change: added, removed, content_changed, label_changed, split_changed,
    meta_changed (``before``/``after`` the values; content hashes for content_changed)."""
    prev_ids, ids = previous["id"].combine_chunks(), items["id"].combine_chunks()
    index = pc.index_in(ids, value_set=prev_ids)
    kept = index.is_valid().to_numpy(zero_copy_only=False)
    rows: list[tuple] = [(i, "added", None, None) for i in ids.filter(pc.invert(index.is_valid())).to_pylist()]
    rows += [(i, "removed", None, None) for i in prev_ids.filter(pc.invert(pc.is_in(prev_ids, value_set=ids))).to_pylist()]
    id_list = ids.to_pylist()
    for column, change in (("content", "content_changed"), ("label", "label_changed"), ("split", "split_changed"),
                           ("meta", "meta_changed")):
        before = previous[column].combine_chunks().take(index).to_pylist()
        after = items[column].to_pylist()
        for k in np.flatnonzero(kept):
            if before[k] != after[k]:
                rows.append((id_list[k], change, _text(before[k]), _text(after[k])))
    return pa.table(list(map(list, zip(*rows))) if rows else [[], [], [], []], schema=CHANGES_SCHEMA)


def _text(value) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value)


def counts(table: pa.Table) -> dict[str, int]:
    """Items added, removed, with a new content, with new metadata (label, split or meta)."""
    kinds = table["change"].to_pylist()
    ids = table["id"].to_pylist()
    meta = {i for i, c in zip(ids, kinds) if c in ("label_changed", "split_changed", "meta_changed")}
    return {"added": kinds.count("added"), "removed": kinds.count("removed"),
            "content_changed": kinds.count("content_changed"), "metadata_changed": len(meta)}


def write(fs, dataset_path: str, record: dict[str, Any], table: pa.Table, items: pa.Table) -> None:
    """The run's changes and its items snapshot, before the items switch (the commit); older snapshots go."""
    meta = {RECORD_KEY: json.dumps(record).encode()}
    run = record["run"]
    files.write_parquet_atomic(fs, files.join(dataset_path, "_log", f"{run}.changes.parquet"),
                               table.replace_schema_metadata(meta), compression="zstd")
    files.write_parquet_atomic(fs, files.join(dataset_path, "_log", f"{run}.items.parquet"),
                               items.replace_schema_metadata(meta), compression="zstd", write_page_checksum=True)


def prune(fs, dataset_path: str, current_run: str) -> None:
    """Keep the items snapshots of the last KEEP_SNAPSHOTS runs (the change logs stay)."""
    snapshots = sorted(n for n in files.list_names(fs, files.join(dataset_path, "_log")) if n.endswith(".items.parquet"))
    for name in snapshots[:-KEEP_SNAPSHOTS]:
        if not name.startswith(current_run):
            files.delete_if_exists(fs, files.join(dataset_path, "_log", name))


def record_of(fs, path: str) -> dict[str, Any] | None:
    """The run record in a log file's metadata (None when unreadable)."""
    try:
        raw = (pq.read_schema(path, filesystem=fs).metadata or {}).get(RECORD_KEY)
        record = json.loads(raw.decode()) if raw else None
    except (OSError, pa.ArrowInvalid, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run"), str) else None


def chain(fs, dataset_path: str, current: dict[str, Any] | None, limit: int = 10_000) -> list[dict[str, Any]]:
    """The published runs, newest first: the current record, then each one's previous_run."""
    out, record = [], current
    while record is not None and len(out) < limit:
        out.append(record)
        previous = record.get("previous_run")
        record = record_of(fs, files.join(dataset_path, "_log", f"{previous}.changes.parquet")) if previous else None
    return out


def latest_snapshot(fs, dataset_path: str) -> str | None:
    """The newest readable items snapshot (what a damaged items table is restored from)."""
    names = sorted((n for n in files.list_names(fs, files.join(dataset_path, "_log")) if n.endswith(".items.parquet")),
                   reverse=True)
    for name in names:
        path = files.join(dataset_path, "_log", name)
        try:
            pq.read_table(path, filesystem=fs, page_checksum_verification=True)
            return path
        except (OSError, pa.ArrowInvalid):
            continue
    return None
