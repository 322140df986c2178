"""One feature set: a directory of shards, each committed atomically with a done marker.

Layout::

    <set>/_manifest.json           provenance of the set (written once, atomically)
    <set>/_plan/<shard>.parquet    the shard's items, written at planning, removed once committed
    <set>/part-<shard>.parquet     features of one shard, keyed by (item, content)
    <set>/rejects-<shard>.parquet  rejected inputs of that shard
    <set>/_done/<shard>.json       written last: a shard exists only once this file does

Readers see the current view: rows whose (item, content) is in the dataset's ``_items.parquet``
(store/items.py), with that table's label, split and meta.
"""
from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError
from . import files
from .items import DatasetItems
from .reading import FeatureSetReader
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, feature_schema, parse_provenance, part_schema

SHARD_RE = re.compile(r"^[0-9a-f]{16}$")
# Float features: no dictionary (it would win over and disable BYTE_STREAM_SPLIT), split bytes, zstd.
# Measured in benchmarks/store_write.py (README): smaller files and faster reads than zstd alone.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3,
                       use_dictionary=["row_meta.key_value.key", "row_meta.key_value.value"],
                       use_byte_stream_split=["features.list.element", "frames.list.element.list.element",
                                              "features.values.list.element"],
                       write_statistics=["id", "item"])


class FeatureSet(FeatureSetReader):
    """Handle on ``<root>/<dataset>/<extractor>-<config_id[:12]>`` (read and write)."""

    def __init__(self, fs, path: str, manifest: dict[str, Any]):
        self.fs, self.path, self.manifest = fs, path, manifest
        self.items = DatasetItems(fs, path.rsplit("/", 1)[0], manifest["dataset"])

    @property
    def config_id(self) -> str:
        return self.manifest["config_id"]

    @property
    def dim(self) -> int:
        return self.manifest["dim"]

    @property
    def sparse(self) -> bool:
        """True when features are stored sparse (indices + values per row; see ``schema.SPARSE_TYPE``)."""
        return bool(self.manifest.get("sparse"))

    @property
    def tensor_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of each row for activation sets (stored as bfloat16 bits; read as float32)."""
        tensor = self.manifest.get("tensor")
        return tuple(tensor["shape"]) if isinstance(tensor, dict) else None

    @property
    def name(self) -> str:
        """``DATASET/EXTRACTOR-CONFIGPREFIX``, the handle used on the command line."""
        return f"{self.manifest['dataset']}/{self.manifest['extractor']}-{self.config_id[:12]}"

    def schema(self) -> pa.Schema:
        """The schema readers see (labels joined in from the dataset's current items)."""
        return feature_schema(self.dim, self.manifest.get("frame_dim"), self.sparse, self.tensor_shape is not None)

    def part_schema(self) -> pa.Schema:
        return part_schema(self.dim, self.manifest.get("frame_dim"), self.sparse, self.tensor_shape is not None)

    def shard_path(self, shard: str, kind: str = "part") -> str:
        if not SHARD_RE.match(shard):
            raise StoreError(f"{self.path}: invalid shard id {shard!r}")
        return files.join(self.path, f"{kind}-{shard}.parquet")

    def done_markers(self) -> dict[str, dict[str, Any]]:
        """Committed shards: shard id -> marker. The only source of truth for readers. A marker that is
        damaged (empty after a power cut, not a JSON object) or names a part that is missing or a
        symlink is skipped and listed in ``self.problems`` (``mmfeat fsck --repair`` removes it);
        its items are not done, so the next run extracts them again."""
        out, self.problems = {}, []
        done_dir = files.join(self.path, "_done")
        present = files.list_entries(self.fs, self.path)
        for name in files.list_names(self.fs, done_dir):
            shard = name[:-5] if name.endswith(".json") else ""
            if not SHARD_RE.match(shard):
                continue  # staging files and strays are not shards
            try:
                marker = files.read_json(self.fs, files.join(done_dir, name))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                marker = f"unreadable ({type(exc).__name__})"
            if not isinstance(marker, dict) or not isinstance(marker.get("rows"), int):
                self.problems.append((shard, f"damaged done marker {done_dir}/{name}"))
                continue
            bad = [f"{kind}-{shard}.parquet" for kind in ("part", "rejects")
                   if present.get(f"{kind}-{shard}.parquet") != "file"]
            if bad:
                self.problems.append((shard, f"marker {name} names {', '.join(bad)}: missing or not a regular file"))
                continue
            out[shard] = marker
        return out

    def is_done(self, shard: str) -> bool:
        return files.exists(self.fs, files.join(self.path, "_done", f"{shard}.json"))

    def write_shard(self, shard: str, features: pa.Table, rejects: pa.Table, n_in: int,
                    stats: dict[str, Any] | None = None) -> dict[str, Any]:
        """Commit one shard (a :func:`rows.part_table` and a :func:`rows.reject_table`): staging
        file, footer check, atomic rename, then the done marker."""
        items = len(pc.unique(features["item"])) if features.num_rows else 0
        if items + rejects.num_rows != n_in:
            raise StoreError(f"shard {shard}: {n_in} inputs but {items} with rows + "
                             f"{rejects.num_rows} rejects")
        meta = {PROVENANCE_KEY: json.dumps(self.manifest, sort_keys=True).encode()}
        files.write_parquet_atomic(self.fs, self.shard_path(shard),
                                   features.cast(self.part_schema()).replace_schema_metadata(meta), **PARQUET_OPTIONS)
        files.write_parquet_atomic(self.fs, self.shard_path(shard, "rejects"),
                                   rejects.cast(REJECT_SCHEMA).replace_schema_metadata(meta), compression="zstd")
        reasons = {}
        if rejects.num_rows:
            for row in rejects.group_by("reason").aggregate([("id", "count")]).to_pylist():
                reasons[row["reason"]] = row["id_count"]
        marker = {"shard": shard, "rows": features.num_rows, "items": items, "rejected": rejects.num_rows, "n_in": n_in,
                  "rejects_by_reason": reasons, "config_id": self.config_id, **(stats or {})}
        files.write_json_atomic(self.fs, files.join(self.path, "_done", f"{shard}.json"), marker)
        return marker

    def sweep_debris(self) -> dict[str, int]:
        """Remove what killed writers leave: part/rejects files without a done marker (a kill between
        the rename and the marker), staging files and old shard plans. Only under the set's lease."""
        done = self.done_markers()
        swept = {"orphan_files": 0, "staging": 0, "plans": 0}
        for directory in (self.path, files.join(self.path, "_done"), files.join(self.path, "_plan")):
            for name in files.list_names(self.fs, directory):
                stem = name.rsplit(".", 1)[0]
                if name.startswith(".staging-"):
                    swept["staging"] += files.delete_if_exists(self.fs, files.join(directory, name))
                elif directory.endswith("/_plan"):
                    swept["plans"] += files.delete_if_exists(self.fs, files.join(directory, name))
                elif directory == self.path and name.startswith(("part-", "rejects-")) and \
                        stem.split("-", 1)[1] not in done:
                    swept["orphan_files"] += files.delete_if_exists(self.fs, files.join(directory, name))
        return swept

    def summary(self) -> dict[str, Any]:
        """Counts of the current view (rows, items, rejects by reason) and the set's provenance."""
        markers = self.done_markers()
        keys = self.table(columns=["id"]) if markers else None
        rejects = self.rejects() if markers else REJECT_SCHEMA.empty_table()
        reasons: dict[str, int] = {}
        for reason in rejects["reason"].to_pylist():
            reasons[reason] = reasons.get(reason, 0) + 1
        current = self.items.binding() or {}
        return {"feature_set": self.name, "path": self.path, "config_id": self.config_id, "dim": self.dim,
                "rows": keys.num_rows if keys is not None else 0, "rejected": rejects.num_rows,
                "items": current.get("current", {}).get("items", 0), "current": current.get("current"),
                "parts_glob": files.join(self.path, "part-*.parquet"), "items_path": self.items.items_path,
                "rejects_by_reason": reasons, "shards": len(markers), "extractor": self.manifest["extractor"],
                "dataset": self.manifest["dataset"], "created": self.manifest["created"],
                "weights_sha256": self.manifest["weights_sha256"], "versions": self.manifest["versions"]}


def load_manifest(fs, path: str) -> dict[str, Any]:
    where = files.join(path, "_manifest.json")
    try:
        raw = files.read_json(fs, where)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8
        raise StoreError(f"{where}: cannot read feature set manifest ({type(exc).__name__})") from None
    return parse_provenance(json.dumps(raw).encode(), where)


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()

