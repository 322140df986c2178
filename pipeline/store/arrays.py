"""Features computed elsewhere, stored as a feature set with its items as the dataset's current view."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .catalog import FeatureStore
from .featureset import FeatureSet
from .rows import part_table, reject_table
from .schema import META_TYPE


def import_arrays(store: FeatureStore, provenance: dict[str, Any], ids: Sequence[str], matrix: np.ndarray,
                  labels: Sequence[str | None] | None = None, splits: Sequence[str | None] | None = None,
                  meta: pa.Array | None = None, source: str | None = None,
                  contents: Sequence[str] | None = None) -> FeatureSet:
    """Write ``matrix`` (n, dim) as one shard of the set that ``provenance`` describes; the rows
    become the dataset's current items. ``contents`` identify each item's input (default: a hash of
    its id, so several sets imported for the same ids stay current together). Rows whose (id, content) the
    set already holds are not written again: pass new ``contents`` for inputs whose vectors changed."""
    from ..splits import assign_items
    from .runlog import changes, counts

    n = len(ids)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if contents is None:
        contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in ids]
    contents = pa.array(list(contents), pa.string())
    id_array = pa.array(list(ids), pa.string())
    items = pa.table({"id": id_array, "content": contents, "source": id_array,
                      "label": pa.array(labels if labels is not None else [None] * n, pa.string()),
                      "split": pa.array(splits if splits is not None else [None] * n, pa.string()),
                      "meta": meta if meta is not None else pa.nulls(n, META_TYPE),
                      "size": pa.nulls(n, pa.int64()), "mtime_ns": pa.nulls(n, pa.int64())})
    dataset = store.dataset(provenance["dataset"])
    dataset.bind(source or f"arrays:{provenance['dataset']}")
    previous = dataset.current()
    before = dict(zip(previous["id"].to_pylist(), previous["assigned_split"].to_pylist()))
    items = items.append_column("assigned_split", pa.array(assign_items(
        items["id"].to_pylist(), items["label"].to_pylist(), items["split"].to_pylist(),
        {k: v for k, v in before.items() if v}), pa.string())).append_column("preview", pa.nulls(n, pa.string()))
    digest = hashlib.sha256("\n".join(contents.to_pylist()).encode() + provenance["config_id"].encode()).hexdigest()
    rows = changes(previous, items)
    dataset.publish(items, {"manifest_sha256": digest, "changes": counts(rows), "source": source,
                            "feature_set": f"{provenance['dataset']}/{provenance['extractor']}"}, rows)
    fs = store.create(provenance)
    held = fs.keys()
    held = set(zip(held["id"].to_pylist(), held["content"].to_pylist()))
    new = np.array([(i, c) not in held for i, c in zip(id_array.to_pylist(), contents.to_pylist())], bool)
    if new.any():
        empty = reject_table([], [], [], [], [], [], [])
        rows = pa.array(np.flatnonzero(new))
        fs.write_shard(digest[:16], part_table(id_array.take(rows), contents.take(rows), matrix[new]), empty,
                       int(new.sum()))
    return fs
