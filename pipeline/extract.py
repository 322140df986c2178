"""Run an extractor over a dataset into the feature store, shard by shard.

The steps are public so that orchestrators (flows/) can run shards as separate tasks:
``plan`` (read the source once: content hashes, splits, the run's pending items, shard plans written to
the store) -> ``extract_shard`` for each shard (reads only its own plan) -> ``finish`` (the reject check,
then the run's items published: the view switches only when the run succeeds); ``extract`` does all of it
in this process.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from . import progress as live
from .jobspec import JobSpec
from .planning import Job, Plan, Shard, done_keys, open_job, plan_run  # noqa: F401 (the orchestration API)
from .publishing import DEFAULT_MAX_REJECT_FRACTION, TooManyRejects, finish  # noqa: F401
from .registry import ItemBatch, finite_rows
from .rejects import reason as reject_reason
from .store import FeatureStore
from .store.lease import Lease
from .store.plan import read_plan, remove_plan
from .store.rows import part_table, reject_table

DEFAULT_SHARD_SIZE = 8192


def plan(spec: JobSpec, shard_size: int = DEFAULT_SHARD_SIZE, retry_rejects: bool = False) -> Plan:
    """Read the source once, stage its items as the run's pending view, and write the plan of every shard
    still to extract (items whose (id, content) has neither rows nor a final reject)."""
    return plan_run(spec, shard_size, retry_rejects)[0]


def run_shard(job: Job, shard: Shard) -> dict[str, Any]:
    """Extract one shard from its plan and commit it; returns the shard's done marker (counts, timing)."""
    fs = job.feature_set
    if fs.is_done(shard.shard_id):
        remove_plan(fs.fs, fs.path, shard.shard_id)
        return {**fs.done_markers()[shard.shard_id], "skipped": True}
    start = time.perf_counter()
    rows, kind, root = read_plan(fs.fs, fs.path, shard.shard_id)
    ids, pre, messages = rows["id"].to_pylist(), rows["reason"].to_pylist(), rows["message"].to_pylist()
    if kind == "path":
        pre, messages = recheck(rows, root, pre, messages)
    rejects: list[tuple[int, str, str, str]] = [(i, "open" if r == "changed_since_planning" else "resolve", r, m)
                                                 for i, (r, m) in enumerate(zip(pre, messages)) if r]
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
    marker = fs.write_shard(shard.shard_id, part, _rejects(rows, rejects), len(ids),
                            {"seconds": round(time.perf_counter() - start, 4)})
    remove_plan(fs.fs, fs.path, shard.shard_id)
    Lease(fs.fs, fs.path, shard.lease).refresh()
    return marker


def recheck(rows: pa.Table, root: str, reasons: list, messages: list) -> tuple[list, list]:
    """Files checked again as the shard opens them: still a regular file, still inside the dataset's root
    (unless absolute paths were allowed), still the size and time it had when it was hashed. A file swapped
    for a FIFO or a symlink out of the root, or edited since planning, is a reject, never read under the
    old content's hash (the next run hashes it anew)."""
    import os
    import stat

    reasons, messages = list(reasons), list(messages)
    real_root = os.path.realpath(root) if root else ""
    for i, (path, size, mtime) in enumerate(zip(rows["input"].to_pylist(), rows["size"].to_pylist(),
                                                 rows["mtime_ns"].to_pylist())):
        if reasons[i] or path is None:
            continue
        try:
            info = os.stat(path)
        except OSError as exc:
            reasons[i], messages[i] = "missing_file", f"{path}: {exc.strerror} (gone since planning)"
            continue
        if not stat.S_ISREG(info.st_mode):
            reasons[i], messages[i] = "not_a_file", f"{path} is no longer a regular file (swapped since planning)"
        elif real_root and os.path.commonpath([os.path.realpath(path), real_root]) != real_root:
            reasons[i], messages[i] = "unsafe_path", f"{path} now leaves the dataset root through a symlink"
        elif size is not None and (info.st_size, info.st_mtime_ns) != (size, mtime):
            reasons[i], messages[i] = "changed_since_planning", f"{path} changed after it was hashed"
    return reasons, messages


def _rejects(rows: pa.Table, rejects: list[tuple[int, str, str, str]]) -> pa.Table:
    rejects.sort()
    at = [i for i, *_ in rejects]
    contents, sources = rows["content"].to_pylist(), rows["source"].to_pylist()
    return reject_table([rows["id"][i].as_py() for i in at], [contents[i] for i in at], [sources[i] for i in at],
                        [r[1] for r in rejects], [r[2] for r in rejects],
                        [reject_reason(r[2]).retryable for r in rejects], [r[3] for r in rejects])


def extract_shard(spec: JobSpec, shard: Shard) -> dict[str, Any]:
    """Run one shard from its spec alone (in any worker process; models load once per process)."""
    return run_shard(open_job(spec), shard)


def extract(source: str, modality: str | None = None, extractor: str | None = None,
            overrides: dict[str, Any] | None = None, dataset: str | None = None, store: str | None = None,
            shard_size: int = DEFAULT_SHARD_SIZE, allow_absolute: bool = False, progress: bool | None = None, *,
            retry_rejects: bool = False, max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION,
            fit_on: str | None = None, rebind: bool = False, label_from_name: str | None = None,
            limit: int | None = None, columns: dict[str, str] | None = None, no_header: bool = False) -> dict[str, Any]:
    """Bring the feature set of ``source`` up to date with its manifest; returns its summary.

    Items whose (id, content) is already stored are skipped; edited labels, splits and meta take
    effect without re-extraction; removed items leave the current view. ``modality`` None: from the
    files' types. ``columns``: role -> manifest column (id, path, text, label, split). The summary has
    ``feature_set``, ``path``, ``rows``, ``rejected`` (current view), ``changes`` (since the last
    published run), ``run`` (the published run), and ``processed``, ``items_per_s`` for this run.
    """
    spec = JobSpec(source, modality, extractor, tuple((overrides or {}).items()), dataset, store, allow_absolute,
                   fit_on, rebind, label_from_name, limit, tuple((columns or {}).items()), no_header)
    return extract_spec(spec, shard_size, progress, retry_rejects, max_reject_fraction)


def extract_spec(spec: JobSpec, shard_size: int = DEFAULT_SHARD_SIZE, progress: bool | None = None,
                 retry_rejects: bool = False, max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION) -> dict[str, Any]:
    """:func:`extract` of a :class:`JobSpec`."""
    run_plan, job = plan_run(spec, shard_size, retry_rejects)
    bar = live.Progress(run_plan.processed, run_plan.feature_set, tty=progress)
    start = time.perf_counter()
    markers = []
    try:
        if run_plan.shards:
            job = job or open_job(spec)  # the model loads only when there is something to extract
            with live.tracking(bar):
                for shard in run_plan.shards:
                    markers.append(run_shard(job, shard))
    except BaseException:
        Lease(FeatureStore(spec.store).fs, run_plan.path, run_plan.lease).release(quiet=True)
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    summary = finish(spec.store, run_plan.path, markers, max_reject_fraction, run_plan.lease)
    summary.update(processed=run_plan.processed, seconds=round(elapsed, 3), changes=run_plan.changes,
                   dropped_shards=list(run_plan.dropped),
                   items_per_s=round(run_plan.processed / elapsed, 2) if run_plan.processed and elapsed > 0 else 0.0)
    return summary
