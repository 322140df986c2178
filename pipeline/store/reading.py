"""Read side of a feature set: pyarrow Table, numpy, torch and DuckDB views."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from .schema import PROVENANCE_KEY, REJECT_SCHEMA, parse_provenance


class FeatureSetReader:
    """Mixin: everything here reads only shards named by done markers."""

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

    def table(self, columns: Sequence[str] | None = None, split: str | Sequence[str] | None = None,
              label: str | Sequence[str] | None = None) -> pa.Table:
        """All committed rows as one Arrow table, optionally filtered on split and label."""
        paths = self.files()
        for path in paths:
            self._checked_footer(path)
        if not paths:
            return self.schema().empty_table() if columns is None else self.schema().empty_table().select(columns)
        try:
            tables = [pq.read_table(p, filesystem=self.fs, columns=columns) for p in paths]
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{self.path}: cannot read shards ({exc})") from None
        table = pa.concat_tables(tables)
        for column, wanted in (("split", split), ("label", label)):
            if wanted is not None:
                values = [wanted] if isinstance(wanted, str) else list(wanted)
                table = table.filter(pc.is_in(table[column], pa.array(values, pa.string())))
        return table

    def ids(self) -> pa.ChunkedArray:
        return self.table(columns=["id"])["id"]

    def rejects(self) -> pa.Table:
        paths = self.files("rejects")
        if not paths:
            return REJECT_SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(p, filesystem=self.fs) for p in paths]).replace_schema_metadata(None)

    def numpy(self, split=None, label=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, features float32 (n, dim), labels) as numpy arrays."""
        table = self.table(columns=["id", "label", "features"], split=split, label=label)
        return (np.asarray(table["id"].to_numpy(zero_copy_only=False)), feature_matrix(table["features"]),
                np.asarray(table["label"].to_numpy(zero_copy_only=False)))

    def torch(self, split=None, label=None, device: str = "cpu") -> Any:
        import torch

        return torch.from_numpy(self.numpy(split=split, label=label)[1]).to(device)

    def duckdb(self, connection: Any = None) -> Any:
        """A DuckDB relation over the committed shards (local stores)."""
        import duckdb

        con = connection or duckdb.connect()
        paths = self.files()
        if not paths:
            raise StoreError(f"{self.path}: feature set has no committed shards yet")
        return con.read_parquet(paths)


def feature_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float32>[dim] column -> contiguous float32 (n, dim) array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = array.type.list_size
    if len(array) == 0:
        return np.zeros((0, dim), np.float32)
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
