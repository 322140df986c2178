"""Nearest neighbours over a feature set's current view: cosine (vectors L2-normalized) or L2.

Exact search is batched matrix products on the GPU when there is one (sparse tf-idf rows: sparse products),
fine up to a few hundred thousand rows against as many queries. Beyond that (``method=auto``), an
inverted-file index (faiss ``IndexIVFFlat``, chosen by measurement in benchmarks/audit.py: built in seconds
where HNSW took minutes, and at ``nprobe`` 32 its recall@10 against exact search stays above 0.95) is
built once per set and kept beside it (``<set>/_index/``), keyed by the current view's (id, content)
pairs: when items are added or removed the index is updated (vectors added and removed, never rebuilt from
scratch unless most of it changed), so it is never served stale.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MmfeatError
from . import files
from .items import item_keys
from .matrix import feature_matrix

KEYS_SCHEMA = pa.schema([("key", pa.string()), ("fid", pa.int64())])
_LOADED: dict[str, tuple] = {}  # index path -> (view digest, faiss index, faiss id per view row)
EXACT_BUDGET = 2e10  # rows x queries above which method=auto searches the index
NPROBE = 32


def view_vectors(fs, metric: str = "cosine") -> tuple[np.ndarray, object, pa.Table]:
    """(ids, vectors ready for the metric, the view's id/content/label/split table)."""
    table = fs.table(columns=["id", "content", "label", "split", "features"])
    x = feature_matrix(table["features"], fs.dim)
    return np.asarray(table["id"].to_pylist(), dtype=object), prepared(x, metric), table.drop(["features"])


def prepared(x, metric: str):
    """float32 rows, L2-normalized for cosine (sparse rows stay sparse)."""
    if metric not in ("cosine", "l2"):
        raise MmfeatError(f"metric must be cosine or l2; got {metric!r}")
    if hasattr(x, "tocsr"):
        if metric == "l2":
            raise MmfeatError("sparse features (tfidf) are searched by cosine: their rows are unit-norm")
        return x.tocsr().astype(np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def exact(base, queries, k: int, metric: str = "cosine", exclude_self: bool = False,
          batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(indices (n, k) into ``base``, scores (n, k): cosine similarity, or negative squared L2 distance),
    best first; ``exclude_self``: queries are ``base``'s own rows, each skipping itself."""
    import torch

    k = min(k, base.shape[0] - (1 if exclude_self else 0))
    if k < 1:
        return np.zeros((queries.shape[0], 0), np.int64), np.zeros((queries.shape[0], 0), np.float32)
    if hasattr(base, "tocsr"):
        return _exact_sparse(base, queries, k, exclude_self, batch)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    b = torch.from_numpy(base).to(device)
    norms = (b * b).sum(1) if metric == "l2" else None
    out_i, out_s = [], []
    for start in range(0, queries.shape[0], batch):
        q = torch.from_numpy(queries[start:start + batch]).to(device)
        s = q @ b.T
        if metric == "l2":
            s = 2 * s - norms[None, :] - (q * q).sum(1, keepdim=True)
        if exclude_self:
            rows = torch.arange(len(q), device=device)
            s[rows, rows + start] = -torch.inf
        top = torch.topk(s, k, dim=1)
        out_i.append(top.indices.cpu().numpy())
        out_s.append(top.values.float().cpu().numpy())
    return np.concatenate(out_i), np.concatenate(out_s)


def _exact_sparse(base, queries, k, exclude_self, batch):
    out_i, out_s = [], []
    for start in range(0, queries.shape[0], batch):
        s = (queries[start:start + batch] @ base.T).toarray()
        if exclude_self:
            s[np.arange(len(s)), np.arange(len(s)) + start] = -np.inf
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(s, idx, 1)
        order = np.argsort(-part, axis=1)
        out_i.append(np.take_along_axis(idx, order, 1))
        out_s.append(np.take_along_axis(part, order, 1).astype(np.float32))
    return np.concatenate(out_i), np.concatenate(out_s)


class SetIndex:
    """The faiss index of a set's current view (``<set>/_index/ivf-<metric>.faiss``, with the (id, content)
    key of each of its vectors)."""

    def __init__(self, fs, metric: str = "cosine"):
        """``metric``: cosine, l2, or another name for unit vectors searched by inner product (``centered``:
        the audit's mean-centred rows), each its own index file."""
        self.fs, self.metric = fs, metric
        self.path = files.join(fs.path, "_index", f"ivf-{metric}.faiss")

    def search(self, x: np.ndarray, keys: pa.Array, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the view (``x``'s rows, keyed by ``keys``), scores) of each query's ``k`` nearest,
        the index updated first when the view changed since it was written."""
        index, faiss_ids = self._current(x, keys)
        index.nprobe = NPROBE
        scores, found = index.search(np.ascontiguousarray(queries, np.float32), k)
        position = np.full(int(faiss_ids.max(initial=-1)) + 2, -1, np.int64)
        position[faiss_ids] = np.arange(len(faiss_ids))
        found = np.where(found >= 0, position[np.clip(found, 0, len(position) - 1)], -1)
        return found, (-scores if self.metric == "l2" else scores)

    def _current(self, x: np.ndarray, keys: pa.Array):
        """(the index, the faiss id of each view row): from this process's memory, then from the file, updated
        when the view changed since it was written."""
        digest = keys_digest(keys)
        if _LOADED.get(self.path, ("",))[0] == digest:
            return _LOADED[self.path][1:]
        stored, meta = self._read()
        if stored is not None and meta.get("digest") == digest:
            return self._loaded(digest, stored, self._stored_keys()["fid"].to_numpy())
        if stored is not None:
            known = self._stored_keys()
            had = dict(zip(known["key"].to_pylist(), known["fid"].to_pylist()))
            view = keys.to_pylist()
            present = set(view)
            gone = [fid for key, fid in had.items() if key not in present]
            new = [i for i, key in enumerate(view) if key not in had]
            if len(gone) + len(new) < 0.5 * len(view):  # updated in place: a minority of rows changed
                stored.remove_ids(np.asarray(gone, np.int64))
                fresh = np.arange(meta["next"], meta["next"] + len(new), dtype=np.int64)
                stored.add_with_ids(x[new], fresh)
                had.update(zip([view[i] for i in new], fresh.tolist()))
                ids = np.asarray([had[key] for key in view], np.int64)
                self._write(stored, keys, ids, meta["next"] + len(new), digest)
                return self._loaded(digest, stored, ids)
        index = self._built(x)
        ids = np.arange(len(x), dtype=np.int64)
        self._write(index, keys, ids, len(x), digest)
        return self._loaded(digest, index, ids)

    def _built(self, x: np.ndarray):
        import faiss

        nlist = int(max(1, min(4096, 4 * np.sqrt(len(x)))))
        l2 = self.metric == "l2"
        quantizer = faiss.IndexFlatL2(x.shape[1]) if l2 else faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
        index.train(x[np.random.default_rng(0).permutation(len(x))[:max(64 * nlist, 10_000)]])
        index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
        return index

    def _loaded(self, digest: str, index, ids: np.ndarray):
        _LOADED.clear()  # one index held per process: a large one is gigabytes
        _LOADED[self.path] = (digest, index, np.asarray(ids, np.int64))
        return index, _LOADED[self.path][2]

    def _read(self):
        import faiss

        try:
            meta = files.read_json(self.fs.fs, self.path + ".json")
            if not (isinstance(meta, dict) and isinstance(meta.get("next"), int)):
                return None, None
            with self.fs.fs.open_input_stream(self.path) as f:
                blob = f.read()
            return faiss.deserialize_index(np.frombuffer(blob, np.uint8)), meta
        except (OSError, ValueError, RuntimeError):
            return None, None

    def _stored_keys(self) -> pa.Table:
        import pyarrow.parquet as pq

        try:
            return pq.read_table(self.path + ".keys.parquet", filesystem=self.fs.fs).cast(KEYS_SCHEMA)
        except (OSError, pa.ArrowInvalid, ValueError):
            return KEYS_SCHEMA.empty_table()

    def _write(self, index, keys: pa.Array, ids: np.ndarray, next_id: int, digest: str) -> None:
        import faiss

        # the record goes first and comes back last: an index whose keys did not follow it is rebuilt, never
        # served with the wrong keys
        files.delete_if_exists(self.fs.fs, self.path + ".json")
        files.write_bytes_atomic(self.fs.fs, self.path, faiss.serialize_index(index).tobytes())
        files.write_parquet_atomic(self.fs.fs, self.path + ".keys.parquet",
                                   pa.table({"key": keys, "fid": pa.array(ids, pa.int64())}, schema=KEYS_SCHEMA))
        files.write_json_atomic(self.fs.fs, self.path + ".json", {"next": next_id, "digest": digest})


def keys_digest(keys: pa.Array) -> str:
    """sha256 of the view's (id, content) keys in order, over Arrow's buffers (no Python strings)."""
    keys = pa.concat_arrays([keys.cast(pa.large_string())])  # fresh buffers at offset 0
    offsets = np.frombuffer(keys.buffers()[1], np.int64, len(keys) + 1)
    digest = hashlib.sha256(offsets.tobytes())
    if keys.buffers()[2] is not None:
        digest.update(memoryview(keys.buffers()[2])[:int(offsets[-1])])
    return digest.hexdigest()


def search(fs, query_ids: list[str] | None = None, queries=None, k: int = 10, metric: str = "cosine",
           method: str = "auto") -> pa.Table:
    """The ``k`` nearest neighbours in ``fs``'s current view of each query: rows of the view named by
    ``query_ids`` (all rows when None; each skipping itself), or ``queries`` (vectors; ``query_ids`` are
    then their names). A table: query, neighbor, rank, score, label, split (the neighbour's)."""
    ids, x, view = view_vectors(fs, metric)
    own = queries is None
    if own:
        where = _positions(ids, query_ids)
        queries, query_ids = x[where], list(ids[where])
    else:
        queries = prepared(queries, metric)
        query_ids = list(query_ids) if query_ids is not None else [f"query-{i}" for i in range(queries.shape[0])]
    wanted = k + (1 if own else 0)
    if _method(method, x.shape[0], queries.shape[0], hasattr(x, "tocsr")) == "exact":
        found, scores = exact(x, queries, wanted, metric)
    else:
        found, scores = SetIndex(fs, metric).search(x, item_keys(view["id"], view["content"]), queries, wanted)
    if own:
        found, scores = _without(found, scores, where, k)
    return _table(query_ids, found, scores, ids, view)


def _method(method: str, n: int, q: int, sparse: bool) -> str:
    if method not in ("auto", "exact", "index"):
        raise MmfeatError(f"method must be auto, exact or index; got {method!r}")
    if method == "auto":
        return "exact" if sparse or n * q <= EXACT_BUDGET or n < 10_000 else "index"
    if method == "index" and sparse:
        raise MmfeatError("sparse features (tfidf) are searched exactly")
    return method


def _positions(ids: np.ndarray, wanted) -> np.ndarray:
    if wanted is None:
        return np.arange(len(ids))
    at = pc.index_in(pa.array(list(wanted), pa.string()), value_set=pa.array(list(ids), pa.string())).to_pylist()
    missing = [w for w, a in zip(wanted, at) if a is None]
    if missing:
        raise MmfeatError(f"no item {missing[0]!r} in the set's current view ({len(missing)} missing)")
    return np.asarray(at, np.int64)


def _without(found: np.ndarray, scores: np.ndarray, self_rows: np.ndarray, k: int):
    """Each query's neighbours without itself (the query's own row), at most ``k``."""
    keep = (found != self_rows[:, None]) & (found >= 0)
    out_i = np.full((len(found), k), -1, np.int64)
    out_s = np.full((len(found), k), np.nan, np.float32)
    for r in range(len(found)):
        f, s = found[r][keep[r]][:k], scores[r][keep[r]][:k]
        out_i[r, :len(f)], out_s[r, :len(s)] = f, s
    return out_i, out_s


def _table(query_ids, found, scores, ids, view) -> pa.Table:
    n, k = found.shape
    valid = (found >= 0).reshape(-1)
    flat = np.maximum(found.reshape(-1), 0)
    take = pa.array(flat[valid])
    return pa.table({"query": pa.array(np.repeat(np.asarray(query_ids, dtype=object), k)[valid], pa.string()),
                     "neighbor": pa.array(ids[flat[valid]], pa.string()),
                     "rank": pa.array(np.tile(np.arange(1, k + 1), n)[valid], pa.int32()),
                     "score": pa.array(scores.reshape(-1)[valid], pa.float32()),
                     "label": view["label"].combine_chunks().take(take),
                     "split": view["split"].combine_chunks().take(take)})
