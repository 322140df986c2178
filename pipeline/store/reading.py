"""Read side of a feature set: the current view as a pyarrow Table, numpy, torch and DuckDB."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from ..progress import log
from .matrix import csr_tensor, feature_matrix
from .rows import current_rejects, current_view
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, REJECT_VIEW_SCHEMA, parse_provenance

_PART_ONLY = ("id", "features", "frames")
_WARNED: set = set()
# Columns a reader may ask for beyond the view's schema: the item's content hash (its identity).
_EXTRA = {"content": pa.field("content", pa.string()), "preview": pa.field("preview", pa.string())}


class FeatureSetReader:
    """Mixin: everything here reads only shards named by done markers, and only current rows."""

    def files(self, kind: str = "part") -> list[str]:
        return [self.shard_path(shard, kind) for shard in sorted(self.done_markers())]

    def _checked_footer(self, path: str) -> None:
        try:
            schema = pq.read_schema(path, filesystem=self.fs)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{path}: unreadable Parquet file ({exc})") from None
        prov = parse_provenance((schema.metadata or {}).get(PROVENANCE_KEY), path)
        if prov["config_id"] != self.config_id:
            raise StoreError(f"{path}: config_id {prov['config_id']} differs from the feature set's "
                             f"{self.config_id}; refusing to mix feature sets")
        expected = self.part_schema() if "/part-" in path else REJECT_SCHEMA
        if not schema.remove_metadata().equals(expected):
            raise StoreError(f"{path}: schema differs from the feature set's ({schema.remove_metadata()}); "
                             "refusing to mix it in (mmfeat fsck --repair drops it)")

    def _read_parts(self, columns: Sequence[str], kind: str = "part") -> pa.Table:
        """The named columns of every healthy shard's part (or rejects) file, each page's checksum verified;
        a shard whose data no longer reads is skipped, named, and noted for the next extract to re-extract."""
        schema = self.part_schema() if kind == "part" else REJECT_SCHEMA
        tables = [t for t in (self._read_file(shard, kind, columns) for shard in sorted(self.done_markers()))
                  if t is not None]
        if not tables:
            return schema.empty_table().select(list(columns))
        return pa.concat_tables(tables)

    def _read_file(self, shard: str, kind: str, columns: Sequence[str] | None) -> pa.Table | None:
        path = self.shard_path(shard, kind)
        try:
            table = pq.read_table(path, filesystem=self.fs, columns=list(columns) if columns else None,
                                  page_checksum_verification=True)
        except (OSError, pa.ArrowInvalid) as exc:
            why = f"{path}: unreadable data ({str(exc).splitlines()[0][:200]})"
            if why not in _WARNED:
                _WARNED.add(why)
                log.warning("%s: skipping shard %s: %s (the next extract re-extracts its items; mmfeat fsck "
                            "--repair drops it now)", self.name, shard, why)
            self.suspect(shard, why)
            return None
        return table.replace_schema_metadata(None)

    def table(self, columns: Sequence[str] | None = None, split: str | Sequence[str] | None = None,
              label: str | Sequence[str] | None = None) -> pa.Table:
        """The current view as one Arrow table, in id order, optionally filtered on split and label."""
        schema = self._schema_with_extras()
        wanted = list(columns) if columns is not None else self.schema().names
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            raise StoreError(f"unknown column(s) {unknown}; columns: {', '.join(schema.names)}")
        filters = [c for c, v in (("split", split), ("label", label)) if v is not None and c not in wanted]
        read = ["id", "item", "content", "row_meta"] + [c for c in wanted if c in _PART_ONLY and c != "id"]
        view = current_view(self._read_parts(read), self.items.current(), wanted + filters, self.name)
        for column, value in (("split", split), ("label", label)):
            if value is not None:
                values = [value] if isinstance(value, str) else list(value)
                view = view.filter(pc.is_in(view[column], pa.array(values, pa.string())))
        return view.select(wanted).cast(pa.schema([schema.field(c) for c in wanted]))

    def iter_tables(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """The current view one part file at a time (memory bounded by a shard, not the set); each id
        once across parts (the ids seen so far are the only state kept)."""
        schema = self._schema_with_extras()
        items, seen = self.items.current(), set()
        read = ["id", "item", "content", "row_meta"] + [c for c in columns if c in _PART_ONLY and c != "id"]
        for shard in sorted(self.done_markers()):
            part = self._read_file(shard, "part", read)
            if part is None:
                continue
            view = current_view(part, items, list(dict.fromkeys(["id", *columns])), self.name)
            ids = view["id"].to_pylist()
            fresh = [i not in seen for i in ids]
            seen.update(ids)
            view = view.filter(pa.array(fresh, pa.bool_())).select(list(columns))
            yield view.cast(pa.schema([schema.field(c) for c in columns]))

    def _schema_with_extras(self) -> pa.Schema:
        schema = self.schema()
        for field in _EXTRA.values():
            schema = schema.append(field)
        return schema

    def rows_for(self, pins: pa.Table, columns: Sequence[str]) -> pa.Table:
        """The rows ``pins`` names by (row id, content) whether or not they are current (a head run's
        snapshot), with the pins' label and split and the current meta of their items where they have one."""
        from .items import item_keys
        from .rows import first_per_id, merge_maps

        schema = self._schema_with_extras()
        read = ["id", "item", "content", "row_meta"] + [c for c in columns if c in _PART_ONLY and c != "id"]
        parts = self._read_parts(read)
        pinned = item_keys(pins["id"], pins["content"])
        parts = parts.filter(pc.is_in(item_keys(parts["id"], parts["content"]), value_set=pinned))
        first = first_per_id(parts["id"].combine_chunks(), self.name, warn=False)
        parts = parts.take(pa.array(first)) if first is not None else parts
        parts = parts.take(pc.sort_indices(parts["id"]))
        where = pc.index_in(item_keys(parts["id"], parts["content"]), value_set=pinned)
        items = self.items.current()
        at = pc.index_in(item_keys(parts["item"], parts["content"]), value_set=item_keys(items["id"], items["content"]))
        out = {"label": pins["label"].combine_chunks().take(where), "split": pins["split"].combine_chunks().take(where),
               "meta": merge_maps(items["meta"].combine_chunks().take(at), parts["row_meta"].combine_chunks()),
               "source": items["source"].combine_chunks().take(at)}
        table = pa.table({c: out[c] if c in out else parts[c].combine_chunks() for c in columns})
        return table.cast(pa.schema([schema.field(c) for c in columns]))

    def ids(self) -> pa.ChunkedArray:
        return self.table(columns=["id"])["id"]

    def rejects(self, items: pa.Table | None = None) -> pa.Table:
        """Rejects of current items that have no rows (id, source, stage, reason, retryable, message);
        ``items``: another items table to judge against (a run's, before it is published)."""
        if not self.done_markers():
            return REJECT_VIEW_SCHEMA.empty_table()
        raw = self._read_parts(REJECT_SCHEMA.names, "rejects")
        return current_rejects(raw.cast(REJECT_SCHEMA), self.items.current() if items is None else items,
                               self._read_parts(["item", "content"]))

    def keys(self, kind: str = "part") -> pa.Table:
        """Every (item, content) key written (parts) or decided (rejects, with ``retryable``), current or not."""
        if kind == "part":
            return self._read_parts(["item", "content"]).rename_columns(["id", "content"])
        return self._read_parts(["id", "content", "retryable"], "rejects")

    def numpy(self, split=None, label=None) -> tuple[np.ndarray, Any, np.ndarray]:
        """(ids, features float32 (n, dim), labels) as numpy arrays (features as a scipy CSR matrix
        for sparse sets). ``split``/``label`` filter (every item carries a split: the manifest's, or the
        one the store assigned it); an unknown split value is an error naming the ones there are."""
        table = self.table(columns=["id", "label", "split", "features"])
        for column, value in (("split", split), ("label", label)):
            if value is not None:
                values = [value] if isinstance(value, str) else list(value)
                there = set(pc.unique(table[column]).to_pylist())
                if column == "split" and not set(values) & there:
                    raise StoreError(f"{self.name} has no {values} rows; splits: {sorted(map(str, there))}")
                table = table.filter(pc.is_in(table[column], pa.array(values, pa.string())))
        return (np.asarray(table["id"].to_numpy(zero_copy_only=False)), feature_matrix(table["features"], self.dim),
                np.asarray(table["label"].to_numpy(zero_copy_only=False)))

    def torch(self, split=None, label=None, device: str = "cpu") -> tuple[np.ndarray, Any, np.ndarray]:
        """(ids, features as a tensor on ``device`` (a sparse CSR tensor for sparse sets), labels): as
        :meth:`numpy`, the features a tensor (its own memory: writable)."""
        import torch

        ids, x, labels = self.numpy(split=split, label=label)
        return ids, (csr_tensor(x, device) if not isinstance(x, np.ndarray) else torch.tensor(x, device=device)), labels

    def neighbors(self, ids: Sequence[str] | None = None, vectors=None, k: int = 10, metric: str = "cosine",
                  method: str = "auto") -> pa.Table:
        """The ``k`` nearest items of the current view to each of ``ids`` (the view's own rows, each skipping
        itself; all rows when None) or to ``vectors`` (with ``ids`` naming them): query, neighbor, rank,
        score (cosine similarity, or minus the squared L2 distance), label, split. Exact search up to a
        size, an index kept beside the set beyond it (store/neighbors.py)."""
        from .neighbors import search

        return search(self, list(ids) if ids is not None else None, vectors, k, metric, method)

    def __repr__(self) -> str:
        markers = self.done_markers()
        return (f"FeatureSet({self.name!r}, rows={sum(m['rows'] for m in markers.values())}, dim={self.dim}, "
                f"shards={len(markers)})")

    def duckdb(self, connection: Any = None) -> Any:
        """A DuckDB relation over the current view."""
        import duckdb

        con = connection or duckdb.connect()
        if not self.files():
            raise StoreError(f"{self.path}: feature set has no committed shards yet")
        return con.from_arrow(self.table())
