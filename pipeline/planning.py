"""Planning a run: read the source once (content hashes, the store's splits, changes since the last published
run), open the feature set (its model loaded only when there is work), and, under the set's lease, drop
damaged shards, write the run's pending items and each shard's plan. Nothing readers see changes here: the
items are published when the run succeeds (publishing.py)."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import MmfeatError
from .inputs import Dataset, build_items, load_dataset, manifest_digest, require_modality_columns
from .jobspec import JobSpec
from .progress import log
from .registry import Corpus, Extractor, cached_extractor, cheap_config_id
from .store import FeatureSet, FeatureStore, make_provenance
from .store.items import item_keys
from .store.lease import Lease
from .store.pending import write_pending
from .store.plan import write_plan
from .store.runlog import changes as change_rows
from .store.runlog import counts
from .store.state import with_state


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
    dropped: tuple[str, ...] = ()  # damaged shards dropped at planning (their items are extracted again)

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
        with_state(store, fitted_on, extractor, lambda folder: extractor.fit_corpus(source, folder),
                   can_fit=source is not None)
    provenance = make_provenance(spec.dataset, extractor, extractor.frame_dim)
    provenance["fitted_on"] = fitted_on
    return Job(spec, extractor, store.create(provenance))


def read_items(spec: JobSpec, handle) -> tuple[Dataset, pa.Table, pa.Table]:
    """(dataset, the dataset's items now: content hashes, splits, path rejects; the last published items)."""
    dataset = load_dataset(spec.source, spec.dataset, spec.allow_absolute, spec.label_from_name, spec.limit,
                           dict(spec.columns), spec.no_header)
    require_modality_columns(dataset, spec.modality, spec.source)
    if dataset.table["label"].null_count == dataset.table.num_rows:
        log.warning("%s: no item has a label (no label column, no label folders): fine for predicting; to train "
                    "a head, add a 'label' column, use root/<label>/<file> folders, or --label-from-name REGEX",
                    spec.dataset)
    previous = handle.current_or_restored()
    return dataset, build_items(dataset, previous, rehash=spec.rehash), previous


def plan_run(spec: JobSpec, shard_size: int, retry_rejects: bool) -> tuple[Plan, Job | None]:
    """The run's plan, and its job when the model had to be loaded to plan it."""
    if shard_size < 1:
        raise MmfeatError("shard_size must be >= 1")
    store = FeatureStore(spec.store)
    handle = store.dataset(spec.dataset)
    _warn_if_read_differently(handle.check_binding(spec.source, spec.rebind) and handle.read_options(), spec)
    dataset, items, previous = read_items(spec, handle)
    handle.bind(spec.source, spec.rebind)
    rows = change_rows(previous, items)
    fs, job = _feature_set(spec, store, items, dataset.kind)
    lease = Lease(store.fs, fs.path, holder="extract").acquire()
    try:
        swept = fs.sweep_debris()
        dropped = tuple(shard for shard, _ in fs.drop_damaged())
        record = {"feature_set": fs.name, "manifest_sha256": manifest_digest(spec.source, items),
                  "changes": counts(rows), "read": read_options(spec), "source": spec.source}
        write_pending(fs.fs, fs.path, items, record, rows)
        shards = _plan_shards(fs, items, shard_size, retry_rejects, dataset.kind, lease,
                              "" if spec.allow_absolute else dataset.root)
        return Plan(fs.name, fs.path, shards, items.num_rows, record["changes"], lease, swept, dropped), job
    except BaseException:
        Lease(store.fs, fs.path, lease).release()
        raise


def _feature_set(spec: JobSpec, store: FeatureStore, items: pa.Table, kind: str) -> tuple[FeatureSet, Job | None]:
    """The run's feature set without loading a model when its id is known from the config and the weights'
    hash alone and the set exists (a no-op nightly rerun loads nothing); else through :func:`open_job`."""
    config_id = cheap_config_id(spec.extractor, dict(spec.overrides))
    if config_id is not None:
        path = store.set_path(spec.dataset, spec.extractor, config_id)
        try:
            return store.open_path(path), None
        except MmfeatError:
            pass  # a new set (or a damaged manifest): the job writes it
    usable = items.filter(pc.is_null(items["reason"]))["input"].to_pylist()
    job = open_job(spec, Corpus(usable, kind))
    return job.feature_set, job


def read_options(spec: JobSpec) -> dict[str, Any]:
    """How the source was read into the current items, recorded with them: a later run by the library
    (network fine-tuning's second extraction) reads it the same way, labels from file names included."""
    return {"allow_absolute": spec.allow_absolute, "label_from_name": spec.label_from_name, "limit": spec.limit,
            "columns": dict(spec.columns), "no_header": spec.no_header}


def _warn_if_read_differently(before: dict[str, Any] | None, spec: JobSpec) -> None:
    """Labels from file names are part of how the source is read: a run without the last run's pattern
    publishes the items without those labels (for every set of the dataset), so say so."""
    before = before or {}
    if before.get("label_from_name") and before["label_from_name"] != spec.label_from_name:
        log.warning("the last run read %s with --label-from-name %r; this run %s: the items' labels change with it",
                    spec.source, before["label_from_name"],
                    f"uses {spec.label_from_name!r}" if spec.label_from_name else "has none, so those labels are dropped")


def _plan_shards(fs: FeatureSet, items: pa.Table, shard_size: int, retry_rejects: bool, kind: str,
                 lease: str, root: str) -> tuple[Shard, ...]:
    todo = items.filter(pc.invert(pc.is_in(item_keys(items["id"], items["content"]),
                                           value_set=done_keys(fs, retry_rejects))))
    todo = todo.take(pc.sort_indices(todo["id"]))
    shards = []
    for start in range(0, todo.num_rows, shard_size):
        rows = todo.slice(start, shard_size)
        digest = hashlib.sha256(fs.config_id.encode())
        digest.update("\n".join(item_keys(rows["id"], rows["content"]).to_pylist()).encode("utf-8", "surrogatepass"))
        shard = Shard(digest.hexdigest()[:16], rows.num_rows, lease)
        write_plan(fs.fs, fs.path, shard.shard_id, rows, kind, root)
        shards.append(shard)
    return tuple(shards)


def done_keys(feature_set: FeatureSet, retry_rejects: bool) -> pa.Array:
    """The (id, content) keys with rows or a final reject in the set's healthy shards."""
    parts = feature_set.keys("part")
    rejects = feature_set.keys("rejects")
    if retry_rejects:
        rejects = rejects.filter(pc.invert(pc.fill_null(rejects["retryable"], False)))
    return pa.concat_arrays([item_keys(parts["id"], parts["content"]), item_keys(rejects["id"], rejects["content"])])
