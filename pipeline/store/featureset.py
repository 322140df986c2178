"""One feature set: a directory of shards, each committed atomically with a done marker.

Layout::

    <set>/_manifest.json           provenance of the set (written once, atomically)
    <set>/part-<shard>.parquet     features of one shard
    <set>/rejects-<shard>.parquet  rejected inputs of that shard
    <set>/_done/<shard>.json       written last: a shard exists only once this file does
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .reading import FeatureSetReader
from .schema import META_TYPE, PROVENANCE_KEY, REJECT_SCHEMA, feature_schema, parse_provenance

SHARD_RE = re.compile(r"^[0-9a-f]{16}$")
# Float features: no dictionary (it would win over and disable BYTE_STREAM_SPLIT), split bytes, zstd.
# Measured in benchmarks/store_write.py (README): smaller files and faster reads than zstd alone.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=["id", "label", "split", "source", "meta.key_value.key", "meta.key_value.value"],
                       use_byte_stream_split=["features.list.element", "frames.list.element.list.element"],
                       write_statistics=["id", "label", "split"])


class FeatureSet(FeatureSetReader):
    """Handle on ``<root>/<dataset>/<extractor>-<config_id[:12]>`` (read and write)."""

    def __init__(self, fs, path: str, manifest: dict[str, Any]):
        self.fs, self.path, self.manifest = fs, path, manifest

    @property
    def config_id(self) -> str:
        return self.manifest["config_id"]

    @property
    def dim(self) -> int:
        return self.manifest["dim"]

    @property
    def name(self) -> str:
        """``DATASET/EXTRACTOR-CONFIGPREFIX``, the handle used on the command line."""
        return f"{self.manifest['dataset']}/{self.manifest['extractor']}-{self.config_id[:12]}"

    def schema(self) -> pa.Schema:
        return feature_schema(self.dim, self.manifest.get("frame_dim"))

    def shard_path(self, shard: str, kind: str = "part") -> str:
        if not SHARD_RE.match(shard):
            raise StoreError(f"{self.path}: invalid shard id {shard!r}")
        return files.join(self.path, f"{kind}-{shard}.parquet")

    def done_markers(self) -> dict[str, dict[str, Any]]:
        """Committed shards: shard id -> marker contents. The only source of truth for readers."""
        out = {}
        done_dir = files.join(self.path, "_done")
        for name in files.list_names(self.fs, done_dir):
            shard = name[:-5] if name.endswith(".json") else ""
            if not SHARD_RE.match(shard):
                continue  # staging files and strays are not shards
            marker = files.read_json(self.fs, files.join(done_dir, name))
            if not isinstance(marker, dict) or not isinstance(marker.get("rows"), int):
                raise StoreError(f"{done_dir}/{name}: malformed done marker")
            out[shard] = marker
        return out

    def is_done(self, shard: str) -> bool:
        return files.exists(self.fs, files.join(self.path, "_done", f"{shard}.json"))

    def write_shard(self, shard: str, features: pa.Table, rejects: pa.Table, n_in: int,
                    stats: dict[str, Any] | None = None, items: int | None = None) -> dict[str, Any]:
        """Commit one shard: staging file, footer check, atomic rename, then the done marker.
        ``items``: inputs that produced rows, when an input can yield several (audio windows)."""
        items = features.num_rows if items is None else items
        if items + rejects.num_rows != n_in:
            raise StoreError(f"shard {shard}: {n_in} inputs but {items} with rows + "
                             f"{rejects.num_rows} rejects")
        meta = {PROVENANCE_KEY: json.dumps(self.manifest, sort_keys=True).encode()}
        self._write_parquet(self.shard_path(shard), features.cast(self.schema()).replace_schema_metadata(meta))
        self._write_parquet(self.shard_path(shard, "rejects"), rejects.cast(REJECT_SCHEMA).replace_schema_metadata(meta))
        reasons = {}
        if rejects.num_rows:
            for row in rejects.group_by("reason").aggregate([("id", "count")]).to_pylist():
                reasons[row["reason"]] = row["id_count"]
        marker = {"shard": shard, "rows": features.num_rows, "items": items, "rejected": rejects.num_rows, "n_in": n_in,
                  "rejects_by_reason": reasons, "config_id": self.config_id, **(stats or {})}
        files.write_json_atomic(self.fs, files.join(self.path, "_done", f"{shard}.json"), marker)
        return marker

    def _write_parquet(self, final: str, table: pa.Table) -> None:
        tmp = files.staging_path(self.path, ".parquet")
        options = PARQUET_OPTIONS if "features" in table.column_names else {"compression": "zstd"}
        pq.write_table(table, tmp, filesystem=self.fs, **options)
        written = pq.ParquetFile(self.fs.open_input_file(tmp)).metadata.num_rows
        if written != table.num_rows:
            self.fs.delete_file(tmp)
            raise StoreError(f"{final}: wrote {written} rows, expected {table.num_rows}")
        self.fs.move(tmp, final)

    def summary(self) -> dict[str, Any]:
        markers = self.done_markers().values()
        reasons: dict[str, int] = {}
        for m in markers:
            for reason, count in m.get("rejects_by_reason", {}).items():
                reasons[reason] = reasons.get(reason, 0) + count
        return {"feature_set": self.name, "path": self.path, "config_id": self.config_id, "dim": self.dim,
                "rows": sum(m["rows"] for m in markers), "rejected": sum(m["rejected"] for m in markers),
                "rejects_by_reason": reasons, "shards": len(markers), "extractor": self.manifest["extractor"],
                "dataset": self.manifest["dataset"], "created": self.manifest["created"],
                "weights_sha256": self.manifest["weights_sha256"], "versions": self.manifest["versions"]}


def load_manifest(fs, path: str) -> dict[str, Any]:
    where = files.join(path, "_manifest.json")
    try:
        raw = files.read_json(fs, where)
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{where}: cannot read feature set manifest ({exc})") from None
    return parse_provenance(json.dumps(raw).encode(), where)


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def features_table(ids, labels, splits, sources, matrix: np.ndarray, frames=None, meta=None) -> pa.Table:
    """Build a feature table from arrays; ``matrix`` is float32 (n, dim); ``meta`` a
    map<string, string> array of the manifest's other columns (null when absent)."""
    n, dim = matrix.shape
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    columns = {"id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.string()),
               "split": pa.array(splits, pa.string()), "source": pa.array(sources, pa.string()),
               "meta": meta if meta is not None else pa.nulls(n, META_TYPE),
               "features": pa.FixedSizeListArray.from_arrays(flat, dim)}
    if frames is not None:
        columns["frames"] = frames
    return pa.table(columns)
