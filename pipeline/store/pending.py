"""A run's items before it publishes them: written at planning beside the shard plans
(``<set>/_plan/_pending.*.parquet``), published by the run's finish when it succeeds, removed otherwise (a
killed run's pending items are swept by the next run, which plans its own)."""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import files

ITEMS, CHANGES = "_pending.items.parquet", "_pending.changes.parquet"
_RECORD = b"mmfeat.pending"


def write_pending(fs, set_path: str, items: pa.Table, record: dict[str, Any], changes: pa.Table) -> None:
    from .schema import ITEMS_SCHEMA

    folder = files.join(set_path, "_plan")
    table = items.select(ITEMS_SCHEMA.names).cast(ITEMS_SCHEMA)
    files.write_parquet_atomic(fs, files.join(folder, ITEMS), table.replace_schema_metadata(
        {_RECORD: json.dumps(record).encode()}), compression="zstd", write_page_checksum=True)
    files.write_parquet_atomic(fs, files.join(folder, CHANGES), changes, compression="zstd")


def read_pending(fs, set_path: str) -> tuple[pa.Table, dict[str, Any], pa.Table] | None:
    """(items, record, changes) of the run planned on this set, or None."""
    folder = files.join(set_path, "_plan")
    if not files.exists(fs, files.join(folder, ITEMS)):
        return None
    items = pq.read_table(files.join(folder, ITEMS), filesystem=fs, page_checksum_verification=True)
    record = json.loads((items.schema.metadata or {})[_RECORD].decode())
    changes = pq.read_table(files.join(folder, CHANGES), filesystem=fs)
    return items.replace_schema_metadata(None), record, changes.replace_schema_metadata(None)


def remove_pending(fs, set_path: str) -> None:
    for name in (ITEMS, CHANGES):
        files.delete_if_exists(fs, files.join(set_path, "_plan", name))
