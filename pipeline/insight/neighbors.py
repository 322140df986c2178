"""``mmfeat neighbors``: the nearest items of a set to some of its items, or to raw inputs extracted as the set
was; the result is kept as the set's latest neighbours (``<set>/_neighbors/latest.parquet``, a DuckDB view)."""
from __future__ import annotations

import dataclasses

import pyarrow as pa

from ..errors import MmfeatError
from ..store import FeatureStore, files


def neighbors(feature_set: str, ids: list[str] | None = None, source: str | None = None, k: int = 10,
              metric: str = "cosine", store: str | None = None, dataset: str | None = None,
              method: str = "auto") -> pa.Table:
    """The ``k`` nearest items of ``feature_set``'s current view to each of ``ids`` (items of the set) or to
    each item of ``source`` (a folder, manifest or glob: extracted with the set's config, fitted state
    included, as dataset ``dataset``); a table (query, neighbor, rank, score, label, split)."""
    if bool(ids) == bool(source):
        raise MmfeatError("neighbors takes item ids of the set or --source PATH (raw inputs), not both")
    if k < 1:
        raise MmfeatError("k must be >= 1")
    st = FeatureStore(store)
    fs = st.resolve(feature_set)
    if source:
        queries, names = _extracted(fs, source, st, dataset)
        table = fs.neighbors(names, queries, k, metric, method)
    else:
        table = fs.neighbors(ids, None, k, metric, method)
    files.write_parquet_atomic(st.fs, files.join(fs.path, "_neighbors", "latest.parquet"), table, compression="zstd")
    return table


def _extracted(fs, source: str, st: FeatureStore, dataset: str | None):
    """The source's features, extracted with the set's config (its fitted state's dataset for word2vec/tfidf)."""
    from ..extract import extract
    from ..registry import extractor_class

    cls = extractor_class(fs.manifest["extractor"])
    runtime = {f.name for f in dataclasses.fields(cls.config_type) if f.metadata.get("runtime")}
    overrides = {k: v for k, v in fs.manifest["config"].items() if k not in runtime or (k == "weights" and v)}
    summary = extract(source, cls.modality, cls.name, overrides, dataset=dataset, store=st.uri, progress=False,
                      fit_on=fs.manifest["dataset"] if cls.corpus_fitted else None, max_reject_fraction=1.0)
    queries = st.resolve(summary["feature_set"])
    if queries.config_id != fs.config_id:
        raise MmfeatError(f"{source} extracted as {queries.name}, not with {fs.name}'s config")
    names, x, _ = queries.numpy()
    return x, list(names)
