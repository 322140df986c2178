"""Run an extractor over a dataset into the feature store, shard by shard.

The three steps are public so that orchestrators (flows/) can run shards as separate tasks:
``open_job`` -> ``plan_shards`` -> ``run_shard`` for each, or ``extract`` for all of it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import canonical_json, sha256_text
from .errors import MmfeatError
from .inputs import Dataset, load_dataset, resolve_paths, sorted_ids, text_hash
from .registry import DEFAULT_EXTRACTOR, MODALITIES, Extractor, ItemBatch, cached_extractor, extractor_class
from .store import FeatureSet, FeatureStore, features_table, make_provenance
from .store.schema import META_TYPE, REJECT_SCHEMA

DEFAULT_SHARD_SIZE = 8192


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that defines an extraction; small and picklable, so workers can rebuild the job."""

    source: str
    modality: str
    extractor: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    store: str | None = None
    allow_absolute: bool = False

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise MmfeatError(f"modality must be one of {', '.join(MODALITIES)}; got {self.modality!r}")
        name = self.extractor or DEFAULT_EXTRACTOR[self.modality]
        cls = extractor_class(name)
        if cls.modality != self.modality:
            raise MmfeatError(f"extractor {name!r} is for {cls.modality}, not {self.modality}")
        object.__setattr__(self, "extractor", name)
        object.__setattr__(self, "source", os.path.abspath(self.source))
        object.__setattr__(self, "overrides", tuple(sorted(dict(self.overrides).items())))


@dataclasses.dataclass
class Job:
    spec: JobSpec
    dataset: Dataset
    extractor: Extractor
    feature_set: FeatureSet


@dataclasses.dataclass(frozen=True)
class Shard:
    shard_id: str
    rows: np.ndarray  # row indices into the dataset table


def open_job(spec: JobSpec) -> Job:
    """Load the dataset, the extractor (its model once per process) and open the feature set."""
    dataset = load_dataset(spec.source, spec.dataset, spec.allow_absolute)
    extractor = cached_extractor(spec.extractor, dict(spec.overrides))
    store = FeatureStore(spec.store)
    if hasattr(extractor, "fit_corpus"):
        state = os.path.join(store.root, dataset.name, ".state",
                             f"{spec.extractor}-{sha256_text(canonical_json(extractor.config))[:12]}")
        extractor.fit_corpus(dataset, state)
    feature_set = store.create(make_provenance(dataset.name, extractor, getattr(extractor, "frame_dim", None)))
    return Job(spec, dataset, extractor, feature_set)


def plan_shards(job: Job, shard_size: int = DEFAULT_SHARD_SIZE) -> list[Shard]:
    """Shards of the items not yet in the feature set, in id order.

    A shard id hashes the config_id and the ids it holds, so the same work always has the
    same id (resume, and two writers of one shard produce one file).
    """
    if shard_size < 1:
        raise MmfeatError("shard_size must be >= 1")
    table = job.dataset.table
    order = sorted_ids(table)
    present = job.feature_set.ids()
    rejected = job.feature_set.rejects()["id"]
    done = pa.chunked_array(present.chunks + rejected.chunks, pa.string())
    if len(done):
        keep = pc.invert(pc.is_in(table["id"].take(order), value_set=done.combine_chunks())).to_numpy(zero_copy_only=False)
        order = order[keep]
    ids = table["id"]
    shards = []
    for start in range(0, len(order), shard_size):
        rows = order[start:start + shard_size]
        digest = hashlib.sha256(job.feature_set.config_id.encode())
        digest.update("\0".join(ids.take(rows).to_pylist()).encode())
        shards.append(Shard(digest.hexdigest()[:16], rows))
    return shards


def run_shard(job: Job, shard: Shard) -> dict[str, Any]:
    """Extract one shard and commit it; returns the shard's done marker (counts, timing)."""
    if job.feature_set.is_done(shard.shard_id):
        return {**job.feature_set.done_markers()[shard.shard_id], "skipped": True}
    start = time.perf_counter()
    rows = job.dataset.table.take(pa.array(shard.rows))
    ids, sources = rows["id"].to_pylist(), rows["source"].to_pylist()
    if job.dataset.kind == "path":
        inputs, bad = resolve_paths(job.dataset, sources)
        stored_source = sources
    else:
        inputs, bad, stored_source = sources, {}, text_hash(sources)
    good = np.array([i for i in range(len(ids)) if i not in bad], dtype=np.int64)
    result = job.extractor.extract(ItemBatch([ids[i] for i in good], [inputs[i] for i in good], job.dataset.kind))
    kept = good[result.ok]
    row_ids, meta = rows["id"].take(kept), rows["meta"].take(kept).combine_chunks()
    if result.segments is not None or result.row_meta is not None:
        row_ids, meta = _with_row_meta(row_ids, meta, kept, result.segments, result.row_meta)
    features = features_table(row_ids, rows["label"].take(kept), rows["split"].take(kept),
                              pa.array(stored_source).take(kept), result.features,
                              _frames(result.sequences) if result.sequences is not None else None, meta)
    rejects = [(i, e.stage, e.reason, e.message) for i, e in bad.items()]
    rejects += [(int(good[r.index]), r.stage, r.reason, r.message) for r in result.rejects]
    rejects.sort()
    reject_table = pa.table({"id": [ids[i] for i, *_ in rejects], "source": [stored_source[i] for i, *_ in rejects],
                             "stage": [r[1] for r in rejects], "reason": [r[2] for r in rejects],
                             "message": [r[3][:2000] for r in rejects]}, schema=REJECT_SCHEMA)
    seconds = time.perf_counter() - start
    return job.feature_set.write_shard(shard.shard_id, features, reject_table, len(ids),
                                       {"seconds": round(seconds, 4)}, items=len(np.unique(kept)))


def plan(spec: JobSpec, shard_size: int = DEFAULT_SHARD_SIZE) -> tuple[str, list[Shard]]:
    """(feature set name, shards still to do): what an orchestrator needs to fan out."""
    job = open_job(spec)
    return job.feature_set.name, plan_shards(job, shard_size)


def extract_shard(spec: JobSpec, shard: Shard) -> dict[str, Any]:
    """Run one shard from its spec alone (in any worker process; models load once per process)."""
    return run_shard(open_job(spec), shard)


def summarize(spec: JobSpec) -> dict[str, Any]:
    """The committed feature set's summary (rows, rejects by reason, shards, provenance)."""
    return open_job(spec).feature_set.summary()


def _with_row_meta(ids: pa.Array, meta: pa.Array, kept: np.ndarray, segments: np.ndarray | None,
                   extra: list[dict[str, str]] | None) -> tuple[pa.Array, pa.Array]:
    """Rows that say more than their manifest row: ``extra`` entries merged into each row's meta; for
    items cut into segments, ids ``<id>#<k>`` and ``clip`` (the item's id), ``start_s``, ``end_s``
    (heads keep a clip's segments in one split)."""
    original = meta.to_pylist()
    maps = [dict(m or ()) for m in original]
    for m, more in zip(maps, extra or ()):
        m.update(more)
    if segments is not None:
        k = np.arange(len(kept)) - np.searchsorted(kept, kept)  # rows of one item are contiguous, items ascending
        for m, clip, (a, b) in zip(maps, ids.to_pylist(), segments):
            m.update(clip=clip, start_s=f"{a:.3f}", end_s=f"{b:.3f}")
        ids = pc.binary_join_element_wise(ids, pa.array(k.astype(str)), "#")
    return ids, pa.array([None if o is None and not m else list(m.items()) for o, m in zip(original, maps)], META_TYPE)


def _frames(sequences: list[np.ndarray]) -> pa.Array:
    frame_dim = sequences[0].shape[1] if sequences else 1
    inner = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate([s.reshape(-1) for s in sequences]) if sequences else np.zeros(0, np.float32)), frame_dim)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def extract(source: str, modality: str, extractor: str | None = None, overrides: dict[str, Any] | None = None,
            dataset: str | None = None, store: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
            allow_absolute: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Extract features of every item not yet stored; returns a summary of the feature set.

    The summary has ``feature_set``, ``path``, ``rows``, ``rejected`` (whole set) and
    ``items_per_s`` / ``processed`` for this run.
    """
    spec = JobSpec(source, modality, extractor, tuple((overrides or {}).items()), dataset, store, allow_absolute)
    job = open_job(spec)
    shards = plan_shards(job, shard_size)
    total = int(sum(len(s.rows) for s in shards))
    bar = _progress_bar(total, job.feature_set.name, progress)
    start = time.perf_counter()
    for shard in shards:
        run_shard(job, shard)
        bar.update(len(shard.rows))
    bar.close()
    elapsed = time.perf_counter() - start
    summary = job.feature_set.summary()
    summary.update(processed=total, seconds=round(elapsed, 3),
                   items_per_s=round(total / elapsed, 2) if total and elapsed > 0 else 0.0)
    return summary


def _progress_bar(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, file=sys.stderr)
