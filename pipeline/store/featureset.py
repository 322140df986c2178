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
from ..progress import log
from . import files
from .items import DatasetItems
from .reading import FeatureSetReader
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, feature_schema, part_schema, validate_provenance

SHARD_RE = re.compile(r"^[0-9a-f]{16}$")
# Float features: no dictionary (it would win over and disable BYTE_STREAM_SPLIT), split bytes, zstd.
# Measured in benchmarks/store_write.py (README): smaller files and faster reads than zstd alone.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3,
                       use_dictionary=["row_meta.key_value.key", "row_meta.key_value.value"],
                       use_byte_stream_split=["features.list.element", "frames.list.element.list.element",
                                              "features.values.list.element"],
                       write_statistics=["id", "item"], write_page_checksum=True)


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
        """Committed, healthy shards: shard id -> marker. The only source of truth for readers. A shard whose
        marker is damaged (empty after a power cut, not a JSON object), whose part or rejects file is missing,
        not a regular file, of another size than the marker says, or whose footer names another config or
        schema is skipped and listed in ``self.problems`` (shard, why); the next extract drops it and
        extracts its items again, ``mmfeat fsck --repair`` too. Verdicts are kept while the files are
        unchanged (one footer read per file, not per call)."""
        entries = files.file_infos(self.fs, self.path)
        done = files.file_infos(self.fs, files.join(self.path, "_done"))
        key = (tuple(sorted(entries.items())), tuple(sorted(done.items())))
        if getattr(self, "_health", None) is not None and self._health[0] == key:
            self.problems = list(self._health[2])
            return dict(self._health[1])
        out, problems = {}, []
        for name in done:
            shard = name[:-5] if name.endswith(".json") else ""
            if SHARD_RE.match(shard):  # staging files and strays are not shards
                marker, why = self._verified(shard, entries)
                if why:
                    problems.append((shard, why))
                else:
                    out[shard] = marker
        self._health = (key, out, problems)
        self.problems = list(problems)
        _announce(self, problems)
        return dict(out)

    def _verified(self, shard: str, entries: dict) -> tuple[dict | None, str | None]:
        """(marker, None) for a healthy shard, else (None, why)."""
        where = files.join(self.path, "_done", f"{shard}.json")
        try:
            marker = files.read_json(self.fs, where)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            marker = f"unreadable ({type(exc).__name__})"
        if not isinstance(marker, dict) or not isinstance(marker.get("rows"), int) or \
                not isinstance(marker.get("files", {}), dict):
            return None, f"damaged done marker {where}"
        for kind in ("part", "rejects"):
            name = f"{kind}-{shard}.parquet"
            info = entries.get(name)
            if info is None or info[0] != "file":
                return None, f"marker {shard}.json names {name}: missing or not a regular file"
            expected = (marker.get("files", {}).get(kind) or {}).get("bytes")
            if isinstance(expected, int) and expected != info[1]:
                return None, f"{name} holds {info[1]} bytes, its marker says {expected} (truncated or replaced)"
            try:
                self._checked_footer(files.join(self.path, name))
            except StoreError as exc:
                return None, str(exc)
        return marker, None

    def is_done(self, shard: str) -> bool:
        """Whether the shard is committed and healthy (a damaged one is not: its items are extracted again)."""
        return shard in self.done_markers()

    def drop_damaged(self) -> list[tuple[str, str]]:
        """Remove the damaged shards readers skip (under the set's lease: an extract or ``fsck --repair``),
        and verify the shards a reader found damaged while reading (``_suspect``); returns what was dropped."""
        self.done_markers()
        dropped = list(self.problems)
        for shard in self._suspects():
            why = self.verify_shard(shard)
            if why:
                dropped.append((shard, why))
            files.delete_if_exists(self.fs, files.join(self.path, "_suspect", f"{shard}.json"))
        for shard, _ in dropped:
            for path in (files.join(self.path, "_done", f"{shard}.json"), self.shard_path(shard),
                         self.shard_path(shard, "rejects")):
                files.delete_if_exists(self.fs, path)
        return dropped

    def _suspects(self) -> list[str]:
        names = files.list_names(self.fs, files.join(self.path, "_suspect"))
        return [n[:-5] for n in names if n.endswith(".json") and SHARD_RE.match(n[:-5])]

    def verify_shard(self, shard: str) -> str | None:
        """Read a committed shard's data whole: its sha256 against the marker (when it has one) and every
        page's checksum. None when healthy, else why not."""
        import pyarrow.parquet as pq

        marker = self.done_markers().get(shard)
        if marker is None:
            return None  # not committed, or already known damaged
        for kind in ("part", "rejects"):
            path = self.shard_path(shard, kind)
            expected = (marker.get("files", {}).get(kind) or {}).get("sha256")
            try:
                if expected and files.sha256(self.fs, path) != expected:
                    return f"{path}: its bytes changed since it was written (sha256 differs from the marker's)"
                pq.read_table(path, filesystem=self.fs, page_checksum_verification=True)
            except (OSError, pa.ArrowInvalid) as exc:
                return f"{path}: unreadable data ({str(exc).splitlines()[0][:200]})"
        return None

    def suspect(self, shard: str, why: str) -> None:
        """Note that reading a shard failed (best effort: a read-only reader leaves it to fsck)."""
        try:
            files.write_json_atomic(self.fs, files.join(self.path, "_suspect", f"{shard}.json"), {"why": why[:500]})
        except OSError:
            pass

    def write_shard(self, shard: str, features: pa.Table, rejects: pa.Table, n_in: int,
                    stats: dict[str, Any] | None = None) -> dict[str, Any]:
        """Commit one shard (a :func:`rows.part_table` and a :func:`rows.reject_table`): staging
        file, footer check, atomic rename, then the done marker."""
        items = len(pc.unique(features["item"])) if features.num_rows else 0
        if items + rejects.num_rows != n_in:
            raise StoreError(f"shard {shard}: {n_in} inputs but {items} with rows + "
                             f"{rejects.num_rows} rejects")
        meta = {PROVENANCE_KEY: json.dumps(self.manifest, sort_keys=True).encode()}
        digests = {"part": files.write_parquet_atomic(
            self.fs, self.shard_path(shard), features.cast(self.part_schema()).replace_schema_metadata(meta),
            **PARQUET_OPTIONS), "rejects": files.write_parquet_atomic(
            self.fs, self.shard_path(shard, "rejects"), rejects.cast(REJECT_SCHEMA).replace_schema_metadata(meta),
            compression="zstd", write_page_checksum=True)}
        reasons = {}
        if rejects.num_rows:
            for row in rejects.group_by("reason").aggregate([("id", "count")]).to_pylist():
                reasons[row["reason"]] = row["id_count"]
        marker = {"shard": shard, "rows": features.num_rows, "items": items, "rejected": rejects.num_rows, "n_in": n_in,
                  "rejects_by_reason": reasons, "config_id": self.config_id, "files": digests, **(stats or {})}
        files.write_json_atomic(self.fs, files.join(self.path, "_done", f"{shard}.json"), marker)
        return marker

    def sweep_debris(self, dry_run: bool = False) -> dict[str, int]:
        """Remove what killed writers leave: part/rejects files without a done marker (a kill between the
        rename and the marker), staging files (predictions' too) and old shard plans. Only under the set's
        lease; ``dry_run`` counts without removing."""
        marked = {n[:-5] for n in files.list_names(self.fs, files.join(self.path, "_done")) if n.endswith(".json")}
        swept = {"orphan_files": 0, "staging": 0, "plans": 0}
        for directory in (self.path, files.join(self.path, "_done"), files.join(self.path, "_plan"),
                          files.join(self.path, "_predictions")):
            for name in files.list_names(self.fs, directory):
                stem = name.rsplit(".", 1)[0]
                if name.startswith(".staging-"):
                    kind = "staging"
                elif directory.endswith("/_plan"):
                    kind = "plans"
                elif directory == self.path and name.startswith(("part-", "rejects-")) and \
                        stem.split("-", 1)[1] not in marked:
                    kind = "orphan_files"
                else:
                    continue
                swept[kind] += 1 if dry_run else files.delete_if_exists(self.fs, files.join(directory, name))
        return swept

    def summary(self, items: pa.Table | None = None) -> dict[str, Any]:
        """Counts of the current view (rows, items, rejects by reason; ``items``: a run's items, judged
        before they are published), the shards skipped as damaged, and the set's provenance."""
        from .rows import current_view

        markers = self.done_markers()
        items = self.items.current() if items is None else items
        rows = current_view(self._read_parts(["id", "item", "content", "row_meta"]), items, ["id"],
                            self.name).num_rows if markers else 0
        rejects = self.rejects(items) if markers else REJECT_SCHEMA.empty_table()
        reasons: dict[str, int] = {}
        for reason in rejects["reason"].to_pylist():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"feature_set": self.name, "path": self.path, "config_id": self.config_id, "dim": self.dim,
                "rows": rows, "rejected": rejects.num_rows, "items": items.num_rows, "current": self.items.record(),
                "parts_glob": files.join(self.path, "part-*.parquet"), "items_path": self.items.items_path,
                "rejects_by_reason": reasons, "shards": len(markers), "extractor": self.manifest["extractor"],
                "dataset": self.manifest["dataset"], "created": self.manifest["created"],
                "skipped_shards": [{"shard": s, "why": w} for s, w in self.problems],
                "weights_sha256": self.manifest["weights_sha256"], "versions": self.manifest["versions"]}


def _announce(fs: "FeatureSet", problems: list[tuple[str, str]]) -> None:
    """Say once per process which shards readers skip, and how they heal."""
    for shard, why in problems:
        key = (fs.path, shard, why)
        if key not in _ANNOUNCED:
            _ANNOUNCED.add(key)
            log.warning("%s: skipping shard %s: %s (the next extract re-extracts its items; mmfeat fsck --repair "
                        "drops it now)", fs.name, shard, why)


_ANNOUNCED: set = set()


def load_manifest(fs, path: str) -> dict[str, Any]:
    where = files.join(path, "_manifest.json")
    try:
        raw = files.read_json(fs, where)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8
        raise StoreError(f"{where}: cannot read feature set manifest ({type(exc).__name__})") from None
    return validate_provenance(raw, where)


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()

