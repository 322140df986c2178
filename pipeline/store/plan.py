"""Shard plans: planning writes each shard's items (ids, content hashes, inputs) to its own file,
``<set>/_plan/<shard>.parquet``; a shard task reads only that slice, so a manifest edited between
planning and running can never pair a shard's ids with other items' inputs (img2dataset's reader)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files

PLAN_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("content", pa.string()),
                         pa.field("source", pa.string()), pa.field("input", pa.string()),
                         pa.field("reason", pa.string()), pa.field("message", pa.string()),
                         pa.field("size", pa.int64()), pa.field("mtime_ns", pa.int64())])
KIND_KEY, ROOT_KEY = b"mmfeat.kind", b"mmfeat.root"


def plan_path(set_path: str, shard: str) -> str:
    return files.join(set_path, "_plan", f"{shard}.parquet")


def write_plan(fs, set_path: str, shard: str, rows: pa.Table, kind: str, root: str = "") -> None:
    """Write the shard's slice unless an identical plan (same id = same ids and contents) exists. ``root``:
    the folder its files must stay in (checked again when the shard opens them)."""
    path = plan_path(set_path, shard)
    if files.exists(fs, path):
        return
    table = rows.select(PLAN_SCHEMA.names).cast(PLAN_SCHEMA).replace_schema_metadata(
        {KIND_KEY: kind.encode(), ROOT_KEY: root.encode("utf-8", "surrogatepass")})
    files.write_parquet_atomic(fs, path, table, compression="zstd")


def read_plan(fs, set_path: str, shard: str) -> tuple[pa.Table, str, str]:
    """(the shard's items, their kind: "path" or "text", the root their files must stay in)."""
    path = plan_path(set_path, shard)
    try:
        table = pq.read_table(path, filesystem=fs)
    except FileNotFoundError:
        raise StoreError(f"{path}: no plan for shard {shard}; plan the run again (extract does)") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{path}: unreadable shard plan ({exc}); plan the run again") from None
    meta = table.schema.metadata or {}
    kind = meta.get(KIND_KEY, b"").decode()
    if kind not in ("path", "text") or set(PLAN_SCHEMA.names) - set(table.column_names):
        raise StoreError(f"{path}: shard plan without a valid kind or columns; plan the run again")
    return table.replace_schema_metadata(None), kind, meta.get(ROOT_KEY, b"").decode("utf-8", "surrogatepass")


def remove_plan(fs, set_path: str, shard: str) -> None:
    files.delete_if_exists(fs, plan_path(set_path, shard))
