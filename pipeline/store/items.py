"""A dataset's identity and current view: what it is bound to, and which items (by content) it holds now.

Layout under ``<store>/<dataset>/``::

    _dataset.json     {"name", "source" (the manifest or folder it is bound to), "created",
                       "current": {"manifest_sha256", "items", "updated", "changes"}}
    _items.parquet    the current items: id, content (sha256 of the text or the file's bytes), source,
                      label, split, meta, size, mtime_ns. Replaced atomically by every extract run.

Features are keyed by (item id, content): a feature row belongs to the current view only while its
item is in ``_items.parquet`` with the same content hash. Labels, splits and meta come from here.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .schema import ITEMS_SCHEMA

KEY_SEP = "\x1f"


def item_keys(ids: pa.ChunkedArray | pa.Array, contents: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One string per (id, content) pair; a null content keys as the empty string."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    contents = contents.combine_chunks() if isinstance(contents, pa.ChunkedArray) else contents
    return pc.binary_join_element_wise(ids, pc.fill_null(contents, ""), KEY_SEP)


class DatasetItems:
    """Handle on ``<store>/<dataset>/``: its binding and its current items."""

    def __init__(self, fs, path: str, name: str):
        self.fs, self.path, self.name = fs, path, name
        self._cache: tuple[Any, pa.Table] | None = None

    @property
    def binding_path(self) -> str:
        return files.join(self.path, "_dataset.json")

    @property
    def items_path(self) -> str:
        return files.join(self.path, "_items.parquet")

    def binding(self) -> dict[str, Any] | None:
        if not files.exists(self.fs, self.binding_path):
            return None
        try:
            obj = files.read_json(self.fs, self.binding_path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.binding_path}: unreadable dataset binding ({exc}); "
                             "`mmfeat rm` the dataset or restore the file") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("source"), str):
            raise StoreError(f"{self.binding_path}: malformed dataset binding")
        return obj

    def check_binding(self, source: str, rebind: bool = False) -> dict[str, Any] | None:
        """The current binding; another source under the same name is an error (unless ``rebind``)."""
        current = self.binding()
        if current is not None and current["source"] != source and not rebind:
            raise StoreError(f"dataset {self.name!r} is bound to {current['source']}, not {source}: pass "
                             f"--dataset NAME to store this source under another name, or --rebind if "
                             f"{current['source']} moved there")
        return current

    def bind(self, source: str, rebind: bool = False) -> dict[str, Any]:
        """Bind the name to ``source`` on first use; another source under the same name is an error."""
        current = self.check_binding(source, rebind)
        if current is None or current["source"] != source:
            current = {**(current or {}), "name": self.name, "source": source, "created": _now()}
            files.write_json_atomic(self.fs, self.binding_path, current)
        return current

    def current(self) -> pa.Table:
        """The current items (empty, with the schema, before any run). Read once per file version."""
        info = self.fs.get_file_info(self.items_path)
        if info.type == files.pafs.FileType.NotFound:
            return ITEMS_SCHEMA.empty_table()
        stamp = (info.mtime_ns, info.size)
        if self._cache is None or self._cache[0] != stamp:
            try:
                table = pq.read_table(self.items_path, filesystem=self.fs)
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"{self.items_path}: unreadable items table ({exc}); rerun extract to rewrite it") from None
            if not table.schema.equals(ITEMS_SCHEMA, check_metadata=False):
                raise StoreError(f"{self.items_path}: unexpected schema; rerun extract to rewrite it")
            self._cache = (stamp, table.replace_schema_metadata(None))
        return self._cache[1]

    def publish(self, items: pa.Table, manifest_sha256: str, changes: dict[str, int],
                read: dict[str, Any] | None = None) -> None:
        """Make ``items`` the current view and record what "current" means (manifest hash, time, and
        ``read``: how the source was read, e.g. labels from file names)."""
        files.write_parquet_atomic(self.fs, self.items_path, items.select(ITEMS_SCHEMA.names).cast(ITEMS_SCHEMA),
                                   compression="zstd")
        binding = self.binding() or {"name": self.name}
        binding["current"] = {"manifest_sha256": manifest_sha256, "items": items.num_rows,
                              "updated": _now(), "changes": changes, **({"read": read} if read else {})}
        files.write_json_atomic(self.fs, self.binding_path, binding)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
