"""Arrow row assembly: part tables from extractor output, and the current view that readers see."""
from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .items import item_keys
from .schema import META_TYPE, SPARSE_TYPE, REJECT_SCHEMA, REJECT_VIEW_SCHEMA


def matrix_column(matrix) -> pa.Array:
    """A dense (n, dim) array as fixed_size_list<float32>[dim]; a scipy CSR matrix as the sparse struct."""
    import scipy.sparse as sp

    if sp.issparse(matrix):
        m = matrix.tocsr()
        m.sort_indices()
        offsets = pa.array(m.indptr.astype(np.int32))
        indices = pa.ListArray.from_arrays(offsets, pa.array(m.indices.astype(np.int32)))
        values = pa.ListArray.from_arrays(offsets, pa.array(m.data.astype(np.float32)))
        return pa.StructArray.from_arrays([indices, values], fields=list(SPARSE_TYPE))
    n, dim = matrix.shape
    dtype = np.uint16 if matrix.dtype == np.uint16 else np.float32  # bfloat16 bits of tensor sets stay as they are
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix, dtype=dtype).reshape(-1)), dim)


def frames_column(sequences: list[np.ndarray]) -> pa.Array:
    """Variable-length (t, d) float32 sequences as list<fixed_size_list<float32>[d]>."""
    frame_dim = sequences[0].shape[1] if sequences else 1
    flat = np.concatenate([s.reshape(-1) for s in sequences]) if sequences else np.zeros(0, np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(np.float32, copy=False)), frame_dim)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def part_table(items: pa.Array, contents: pa.Array, matrix: np.ndarray, segments: np.ndarray | None = None,
               row_meta: list[dict[str, str]] | None = None, sequences: list[np.ndarray] | None = None) -> pa.Table:
    """Rows of one shard. ``items``/``contents`` repeat for items cut into several segments (audio
    windows): those rows get ids ``<item>#<k>`` and ``clip``, ``start_s``, ``end_s`` in row_meta."""
    ids = items
    maps = [dict(m) for m in row_meta] if row_meta is not None else None
    if segments is not None:
        item_np = np.asarray(items.to_pylist(), dtype=object)
        first = np.concatenate([[True], item_np[1:] != item_np[:-1]]) if len(item_np) else np.zeros(0, bool)
        starts = np.maximum.accumulate(np.where(first, np.arange(len(item_np)), 0)) if len(item_np) else np.zeros(0, int)
        k = np.arange(len(item_np)) - starts  # rows of one item are contiguous
        ids = pc.binary_join_element_wise(items, pa.array(k.astype(str)), "#")
        maps = maps or [{} for _ in range(len(item_np))]
        for m, clip, (a, b) in zip(maps, item_np, segments):
            m.update(clip=clip, start_s=f"{a:.3f}", end_s=f"{b:.3f}")
    meta = pa.nulls(len(items), META_TYPE) if maps is None else \
        pa.array([list(m.items()) if m else None for m in maps], META_TYPE)
    columns = {"id": ids, "item": items, "content": contents, "row_meta": meta, "features": matrix_column(matrix)}
    if sequences is not None:
        columns["frames"] = frames_column(sequences)
    return pa.table(columns)


def reject_table(ids, contents, sources, stages, reasons, retryable, messages) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.string()), "content": pa.array(contents, pa.string()),
                     "source": pa.array(sources, pa.string()), "stage": pa.array(stages, pa.string()),
                     "reason": pa.array(reasons, pa.string()), "retryable": pa.array(retryable, pa.bool_()),
                     "message": pa.array([m[:2000] for m in messages], pa.string())}, schema=REJECT_SCHEMA)


def merge_maps(a: pa.Array, b: pa.Array) -> pa.Array:
    """Row-wise union of two map<string,string> arrays (``b``'s entries after ``a``'s); null + null is null."""
    if b.null_count == len(b):
        return a
    if a.null_count == len(a):
        return b
    a_off, b_off = a.offsets.to_numpy(), b.offsets.to_numpy()
    a_len, b_len = np.diff(a_off), np.diff(b_off)
    n = len(a)
    total = a_len + b_len
    offsets = np.concatenate([[0], np.cumsum(total)]).astype(np.int32)
    row = np.repeat(np.arange(n), total)
    pos = np.arange(offsets[-1]) - offsets[row]
    from_a = pos < a_len[row]
    src = np.where(from_a, a_off[row] + pos, len(a.keys) + b_off[row] + pos - a_len[row])
    keys = pa.concat_arrays([a.keys, b.keys]).take(pa.array(src))
    values = pa.concat_arrays([a.items, b.items]).take(pa.array(src))
    mask = pa.array(~(a.is_valid().to_numpy(zero_copy_only=False) | b.is_valid().to_numpy(zero_copy_only=False)))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, mask=mask)


def first_per_id(ids: pa.Array, what: str, warn: bool = True) -> np.ndarray | None:
    """Indices keeping the first row of each id, or None when ids are unique. Duplicates come only
    from overlapping writers; the rows are the same work (same item, content and config)."""
    unique = pc.unique(ids)
    if len(unique) == len(ids):
        return None
    if warn:
        warnings.warn(f"{what}: {len(ids) - len(unique)} duplicate row(s) from overlapping writers; "
                      "reading each id once (`mmfeat gc` removes them)", stacklevel=3)
    first = pc.index_in(unique, value_set=ids)
    return np.sort(first.to_numpy())


def current_view(parts: pa.Table, items: pa.Table, columns: list[str], what: str) -> pa.Table:
    """Rows whose (item, content) is current, once per id, in id order, with the item's label,
    split, source and meta (merged with the row's own meta) joined in."""
    keys = item_keys(parts["item"], parts["content"])
    item_key = item_keys(items["id"], items["content"])
    parts = parts.filter(pc.is_in(keys, value_set=item_key))
    first = first_per_id(parts["id"].combine_chunks(), what)
    if first is not None:
        parts = parts.take(pa.array(first))
    parts = parts.take(pc.sort_indices(parts["id"]))
    where = pc.index_in(item_keys(parts["item"], parts["content"]), value_set=item_key)
    out = {}
    for name in columns:
        if name in ("label", "source", "preview"):
            out[name] = items[name].combine_chunks().take(where)
        elif name == "split":
            out[name] = pc.coalesce(items["split"].combine_chunks(), items["assigned_split"].combine_chunks()).take(where)
        elif name == "meta":
            out[name] = merge_maps(items["meta"].combine_chunks().take(where), parts["row_meta"].combine_chunks())
        else:
            out[name] = parts[name].combine_chunks()
    return pa.table(out)


def current_rejects(rejects: pa.Table, items: pa.Table, extracted: pa.Table) -> pa.Table:
    """Rejects of current items (same content) without rows for that content, once per id."""
    keys = item_keys(rejects["id"], rejects["content"])
    current = pc.is_in(keys, value_set=item_keys(items["id"], items["content"]))
    done = pc.is_in(keys, value_set=item_keys(extracted["item"], extracted["content"]))
    rejects = rejects.filter(pc.and_(current, pc.invert(done)))
    first = first_per_id(rejects["id"].combine_chunks(), "rejects", warn=False)  # re-attempts reject again
    rejects = rejects.take(pa.array(first)) if first is not None else rejects
    return rejects.take(pc.sort_indices(rejects["id"])).select(REJECT_VIEW_SCHEMA.names)
