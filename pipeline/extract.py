"""Run an extractor over a dataset into the feature store, shard by shard.

The steps are public so that orchestrators (flows/) can run shards as separate tasks:
``plan`` (read the manifest once: content hashes, the current items, shard plans written to the
store) -> ``extract_shard`` for each shard (reads only its own plan) -> ``finish`` (summary, reject
check); ``extract`` does all of it in this process.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import apply_overrides
from .content import build_items, compare, manifest_digest
from .errors import MmfeatError
from .inputs import Dataset, default_dataset_name, load_dataset, require_modality_columns
from . import progress as live
from .progress import log
from .registry import (DEFAULT_EXTRACTOR, MODALITIES, Corpus, Extractor, ItemBatch, cached_extractor, extractor_class,
                       finite_rows)
from .rejects import reason as reject_reason
from .store import FeatureSet, FeatureStore, make_provenance
from .store.items import item_keys
from .store.lease import Lease
from .store.plan import read_plan, remove_plan, write_plan
from .store.state import with_state
from .store.rows import part_table, reject_table

DEFAULT_SHARD_SIZE = 8192
DEFAULT_MAX_REJECT_FRACTION = 0.5


class TooManyRejects(MmfeatError):
    """A run rejected more than ``max_reject_fraction`` of the items it processed."""


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that defines an extraction; small and picklable, so workers can rebuild the job.

    ``fit_on``: for corpus-fitted extractors (word2vec), the dataset whose fitted state to use, so that
    new data gets the feature set id (config_id) of the data a head was trained on.
    """

    source: str
    modality: str
    extractor: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    store: str | None = None
    allow_absolute: bool = False
    fit_on: str | None = None
    rebind: bool = False
    label_from_name: str | None = None
    limit: int | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise MmfeatError(f"modality must be one of {', '.join(MODALITIES)}; got {self.modality!r}")
        name = self.extractor or DEFAULT_EXTRACTOR[self.modality]
        cls = extractor_class(name)
        if cls.modality != self.modality:
            raise MmfeatError(f"extractor {name!r} is for {cls.modality}, not {self.modality}")
        if self.fit_on and not cls.corpus_fitted:
            raise MmfeatError(f"fit_on: extractor {name!r} learns nothing from a corpus (only corpus-fitted "
                              "extractors such as word2vec take fit_on)")
        apply_overrides(cls.config_type, dict(self.overrides))  # a bad key or value fails here, before any work
        object.__setattr__(self, "extractor", cls.name)
        object.__setattr__(self, "source", os.path.abspath(self.source))
        # A sample is a dataset of its own: it never replaces the full dataset's current view.
        default = default_dataset_name(self.source) + (f"-limit{self.limit}" if self.limit else "")
        object.__setattr__(self, "dataset", self.dataset or default)
        object.__setattr__(self, "overrides", tuple(sorted(dict(self.overrides).items())))


@dataclasses.dataclass
class Job:
    spec: JobSpec
    extractor: Extractor
    feature_set: FeatureSet


@dataclasses.dataclass(frozen=True)
class Shard:
    shard_id: str
    size: int  # items in the shard's plan
    lease: str | None = None  # the run's lease on the feature set, refreshed at each commit


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run will do: the feature set, its shards, and how the manifest changed since the last run."""

    feature_set: str
    path: str
    shards: tuple[Shard, ...]
    items: int
    changes: dict[str, int]
    lease: str | None = None
    swept: dict[str, int] | None = None  # debris of killed writers removed at planning

    @property
    def processed(self) -> int:
        return sum(s.size for s in self.shards)


def open_job(spec: JobSpec, corpus: Corpus | None = None) -> Job:
    """Load the extractor (its model once per process), its fitted state, and open the feature set.
    Reads no manifest: a corpus-fitted extractor's state must exist unless ``corpus`` is given."""
    extractor = cached_extractor(spec.extractor, dict(spec.overrides))
    store = FeatureStore(spec.store)
    fitted_on = None
    if extractor.corpus_fitted:
        fitted_on = spec.fit_on or spec.dataset
        store.dataset(fitted_on)  # checks the name
        source = None if spec.fit_on else corpus
        with_state(store, fitted_on, extractor, lambda folder: extractor.fit_corpus(source, folder))
    provenance = make_provenance(spec.dataset, extractor, extractor.frame_dim)
    provenance["fitted_on"] = fitted_on
    return Job(spec, extractor, store.create(provenance))


def plan(spec: JobSpec, shard_size: int = DEFAULT_SHARD_SIZE, retry_rejects: bool = False) -> Plan:
    """Read the manifest once, make its items the dataset's current view, and write the plan of
    every shard still to extract (items whose (id, content) has neither rows nor a final reject)."""
    return _plan(spec, shard_size, retry_rejects)[0]


def read_items(spec: JobSpec, handle) -> tuple[Dataset, pa.Table, pa.Table]:
    """(dataset, the dataset's items now: content hashes and path rejects, the items of the last run)."""
    dataset = load_dataset(spec.source, spec.dataset, spec.allow_absolute, spec.label_from_name, spec.limit)
    require_modality_columns(dataset, spec.modality, spec.source)
    if dataset.table["label"].null_count == dataset.table.num_rows:
        log.warning("%s: no item has a label (no label column, no label folders): fine for predicting; to train "
                    "a head, add a 'label' column, use root/<label>/<file> folders, or --label-from-name REGEX",
                    spec.dataset)
    previous = handle.current()
    return dataset, build_items(dataset, previous), previous


def _plan(spec: JobSpec, shard_size: int, retry_rejects: bool) -> tuple[Plan, Job]:
    if shard_size < 1:
        raise MmfeatError("shard_size must be >= 1")
    store = FeatureStore(spec.store)
    handle = store.dataset(spec.dataset)
    bound = handle.check_binding(spec.source, spec.rebind)  # before any file is hashed
    _warn_if_read_differently(bound, spec)
    dataset, items, previous = read_items(spec, handle)
    handle.bind(spec.source, spec.rebind)
    changes = compare(previous, items)
    usable = items.filter(pc.is_null(items["reason"]))["input"].to_pylist()
    job = open_job(spec, Corpus(usable, dataset.kind))
    lease = Lease(store.fs, job.feature_set.path).acquire()
    try:
        # Published under the lease: a run refused for a concurrent writer changes nothing readers see.
        handle.publish(items, manifest_digest(spec.source, items), changes, read_options(spec))
        swept = job.feature_set.sweep_debris()
        return _plan_shards(job, items, shard_size, retry_rejects, dataset.kind, lease, changes, swept), job
    except BaseException:
        Lease(store.fs, job.feature_set.path, lease).release()
        raise


def read_options(spec: JobSpec) -> dict[str, Any]:
    """How the source was read into the current items, recorded in the binding: a later run by the library
    (network fine-tuning's second extraction) reads it the same way, labels from file names included."""
    return {"allow_absolute": spec.allow_absolute, "label_from_name": spec.label_from_name, "limit": spec.limit}


def _warn_if_read_differently(bound: dict[str, Any] | None, spec: JobSpec) -> None:
    """Labels from file names are part of how the source is read: a run without the last run's pattern
    publishes the items without those labels (for every set of the dataset), so say so."""
    before = ((bound or {}).get("current") or {}).get("read") or {}
    if before.get("label_from_name") and before["label_from_name"] != spec.label_from_name:
        log.warning("the last run read %s with --label-from-name %r; this run %s: the items' labels change with it",
                    spec.source, before["label_from_name"],
                    f"uses {spec.label_from_name!r}" if spec.label_from_name else "has none, so those labels are dropped")


def _plan_shards(job: Job, items: pa.Table, shard_size: int, retry_rejects: bool, kind: str, lease: str,
                 changes: dict[str, int], swept: dict[str, int]) -> Plan:
    fs = job.feature_set
    todo = items.filter(pc.invert(pc.is_in(item_keys(items["id"], items["content"]),
                                           value_set=_done_keys(fs, retry_rejects))))
    todo = todo.take(pc.sort_indices(todo["id"]))
    shards = []
    for start in range(0, todo.num_rows, shard_size):
        rows = todo.slice(start, shard_size)
        digest = hashlib.sha256(fs.config_id.encode())
        digest.update("\n".join(item_keys(rows["id"], rows["content"]).to_pylist()).encode("utf-8", "surrogatepass"))
        shard = Shard(digest.hexdigest()[:16], rows.num_rows, lease)
        write_plan(fs.fs, fs.path, shard.shard_id, rows, kind)
        shards.append(shard)
    return Plan(fs.name, fs.path, tuple(shards), items.num_rows, changes, lease, swept)


def _done_keys(feature_set: FeatureSet, retry_rejects: bool) -> pa.Array:
    parts = feature_set.keys("part")
    rejects = feature_set.keys("rejects")
    if retry_rejects:
        rejects = rejects.filter(pc.invert(pc.fill_null(rejects["retryable"], False)))
    return pa.concat_arrays([item_keys(parts["id"], parts["content"]), item_keys(rejects["id"], rejects["content"])])


def run_shard(job: Job, shard: Shard) -> dict[str, Any]:
    """Extract one shard from its plan and commit it; returns the shard's done marker (counts, timing)."""
    fs = job.feature_set
    if fs.is_done(shard.shard_id):
        remove_plan(fs.fs, fs.path, shard.shard_id)
        return {**fs.done_markers()[shard.shard_id], "skipped": True}
    start = time.perf_counter()
    rows, kind = read_plan(fs.fs, fs.path, shard.shard_id)
    ids, contents, sources = rows["id"].to_pylist(), rows["content"].to_pylist(), rows["source"].to_pylist()
    pre = rows["reason"].to_pylist()
    rejects: list[tuple[int, str, str, str]] = [(i, "resolve", r, m) for i, (r, m) in
                                                 enumerate(zip(pre, rows["message"].to_pylist())) if r]
    good = np.array([i for i, r in enumerate(pre) if not r], dtype=np.int64)
    inputs = rows["input"].to_pylist()
    counter = live.ShardCounter(live.current())
    counter.advance(len(ids) - len(good))  # resolve-stage rejects are done already
    with live.tracking(counter):
        result = job.extractor.extract(ItemBatch([ids[i] for i in good], [inputs[i] for i in good], kind))
    counter.advance(len(ids) - counter.done)  # extractors that do not report per batch
    for r in result.rejects:
        reject_reason(r.reason)  # an unregistered reason is a bug in the extractor: fail loudly
        rejects.append((int(good[r.index]), r.stage, r.reason, r.message))
    kept = good[result.ok]
    finite = finite_rows(result.features)
    if not finite.all():
        bad_items = np.unique(kept[~finite])
        rejects += [(int(i), "validate", "non_finite_features", "the extractor gave NaN or inf features")
                    for i in bad_items]
        keep_rows = ~np.isin(kept, bad_items)
        result = result.select(keep_rows)
        kept = kept[keep_rows]
    take = pa.array(kept, pa.int64())
    part = part_table(rows["id"].take(take), rows["content"].take(take), result.features, result.segments,
                      result.row_meta, result.sequences)
    rejects.sort()
    reject_rows = reject_table([ids[i] for i, *_ in rejects], [contents[i] for i, *_ in rejects],
                               [sources[i] for i, *_ in rejects], [r[1] for r in rejects], [r[2] for r in rejects],
                               [reject_reason(r[2]).retryable for r in rejects], [r[3] for r in rejects])
    marker = fs.write_shard(shard.shard_id, part, reject_rows, len(ids),
                            {"seconds": round(time.perf_counter() - start, 4)})
    remove_plan(fs.fs, fs.path, shard.shard_id)
    Lease(fs.fs, fs.path, shard.lease).refresh()
    return marker


def extract_shard(spec: JobSpec, shard: Shard) -> dict[str, Any]:
    """Run one shard from its spec alone (in any worker process; models load once per process)."""
    return run_shard(open_job(spec), shard)


def finish(store: str | None, set_path: str, markers: list[dict[str, Any]],
           max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION, lease: str | None = None) -> dict[str, Any]:
    """Release the run's lease and return the feature set's summary; raises :class:`TooManyRejects`
    when this run's shards rejected more than ``max_reject_fraction`` of their items (no model is loaded)."""
    st = FeatureStore(store)
    Lease(st.fs, set_path, lease).release()
    if not 0 <= max_reject_fraction <= 1:
        raise MmfeatError(f"max_reject_fraction must be in [0, 1]; got {max_reject_fraction}")
    summary = st.open_path(set_path).summary()
    n_in = sum(m["n_in"] for m in markers)
    rejected = sum(m["rejected"] for m in markers)
    if n_in and rejected / n_in > max_reject_fraction:
        reasons: dict[str, int] = {}
        for m in markers:
            for r, c in m.get("rejects_by_reason", {}).items():
                reasons[r] = reasons.get(r, 0) + c
        shown = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
        raise TooManyRejects(f"{summary['feature_set']}: {rejected} of {n_in} items rejected "
                             f"({rejected / n_in:.0%} > max_reject_fraction={max_reject_fraction}): {shown}")
    return summary


def extract(source: str, modality: str, extractor: str | None = None, overrides: dict[str, Any] | None = None,
            dataset: str | None = None, store: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
            allow_absolute: bool = False, progress: bool | None = None, *, retry_rejects: bool = False,
            max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION, fit_on: str | None = None,
            rebind: bool = False, label_from_name: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Bring the feature set of ``source`` up to date with its manifest; returns its summary.

    Items whose (id, content) is already stored are skipped; edited labels, splits and meta take
    effect without re-extraction; removed items leave the current view. The summary has
    ``feature_set``, ``path``, ``rows``, ``rejected`` (current view), ``changes`` (since the last run),
    and ``processed``, ``items_per_s`` for this run.
    """
    spec = JobSpec(source, modality, extractor, tuple((overrides or {}).items()), dataset, store, allow_absolute,
                   fit_on, rebind, label_from_name, limit)
    run_plan, job = _plan(spec, shard_size, retry_rejects)
    bar = live.Progress(run_plan.processed, run_plan.feature_set, tty=progress)
    start = time.perf_counter()
    markers = []
    try:
        with live.tracking(bar):
            for shard in run_plan.shards:
                markers.append(run_shard(job, shard))
    except BaseException:
        Lease(job.feature_set.fs, run_plan.path, run_plan.lease).release()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    summary = finish(store, run_plan.path, markers, max_reject_fraction, run_plan.lease)
    summary.update(processed=run_plan.processed, seconds=round(elapsed, 3), changes=run_plan.changes,
                   items_per_s=round(run_plan.processed / elapsed, 2) if run_plan.processed and elapsed > 0 else 0.0)
    return summary
