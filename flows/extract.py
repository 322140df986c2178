"""The ``extract`` flow: plan shards, one task per shard, commit, publish artifacts."""
from __future__ import annotations

import os
import time
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.events import emit_event
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from pipeline import extract as lib
from pipeline.errors import MmfeatError
from pipeline.progress import Progress, tracking

from flows.artifacts import artifact_key, library_logs_to_run
from flows.runners import task_runner

GPU_TAG = "mmfeat-gpu"  # `prefect concurrency-limit create mmfeat-gpu 1` per GPU: never two shards on one GPU
FEATURE_SET_EVENT = "mmfeat.feature-set.committed"  # for automations on any feature set (rows, path in the payload)


def _transient(state) -> bool:
    """Retry I/O hiccups and lost workers, not user errors (a bad config fails the same way every time)."""
    return not isinstance(state.result(raise_on_failure=False), MmfeatError)


@task(name="plan-shards")
def plan_task(spec: lib.JobSpec, shard_size: int, retry_rejects: bool) -> lib.Plan:
    return lib.plan(spec, shard_size, retry_rejects)


@task(name="extract-shard", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2),
      retry_jitter_factor=0.5, timeout_seconds=3600, tags=[GPU_TAG],
      retry_condition_fn=lambda task, run, state: _transient(state))
def shard_task(spec: lib.JobSpec, shard: lib.Shard) -> dict:
    return lib.extract_shard(spec, shard)


def _run_shards(spec: lib.JobSpec, shards: list[lib.Shard]):
    """Shard markers as they complete. On the local runner the shards run one after another in the
    flow's own thread: an extractor already uses every core, and the same warm BERT extraction was
    measured 25% slower in a pool thread than in the main thread (torch's OpenMP kernels; with
    OMP_WAIT_POLICY=passive both ran at the slower speed). Other runners (Dask) get every shard at once."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    if not shards:
        return
    context = FlowRunContext.get()
    run = shard_task if _uses_gpu(spec) else shard_task.with_options(tags=set())
    if context is not None and isinstance(context.task_runner, ThreadPoolTaskRunner):
        for shard in shards:
            yield run(spec, shard)
        return
    # Prefect's timeout cannot interrupt a task in a worker thread (it warns once per task): off there.
    futures = [run.with_options(timeout_seconds=None).submit(spec, shard) for shard in shards]
    for future in futures:
        yield future.result()


def _uses_gpu(spec: lib.JobSpec) -> bool:
    """Whether shards run on CUDA, as the extractor's config says (no model is loaded for it; a flow driving
    GPU workers from a machine without one sets MMFEAT_GPU_SLOTS=1). Only then
    do shards take a slot of the GPU tag's limit: a slot costs database writes per task, and on a SQLite
    server sharing the CPU with the run that was where the server answered 503 (8 Dask workers)."""
    from pipeline.registry import check_config

    if os.environ.get("MMFEAT_GPU_SLOTS") == "1":
        return True
    device = str(getattr(check_config(spec.extractor, dict(spec.overrides)), "device", "cpu"))
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def _drift(feature_set: str, reference: str, store: str | None) -> None:
    from flows.know import drift_task, publish_drift

    try:
        figures = drift_task(feature_set, reference, "latest", store)
    except MmfeatError as exc:  # nothing new to compare, or a reference gone: said, never a failed night
        get_run_logger().warning("drift not measured: %s", exc)
        return
    publish_drift(figures, store)


@task(name="summarize")
def summary_task(store: str | None, set_path: str, markers: list[dict], max_reject_fraction: float,
                 lease: str | None) -> dict:
    return lib.finish(store, set_path, markers, max_reject_fraction, lease)


@flow(name="extract", task_runner=task_runner(), log_prints=False)
def extract_flow(source: str, modality: Literal["image", "text", "audio"], extractor: str | None = None,
                 overrides: dict[str, str] | None = None, dataset: str | None = None, store: str | None = None,
                 shard_size: int = lib.DEFAULT_SHARD_SIZE, allow_absolute_paths: bool = False,
                 retry_rejects: bool = False, max_reject_fraction: float = lib.DEFAULT_MAX_REJECT_FRACTION,
                 fit_on: str | None = None, rebind: bool = False, label_from_name: str | None = None,
                 limit: int | None = None, drift_reference: str | None = None) -> str:
    """Bring the feature set of ``source`` up to date with its manifest; returns the feature set id
    (DATASET/EXTRACTOR-CONFIG). ``overrides`` are the extractor config keys (the CLI's ``--set``).
    Fails (and so triggers nothing) when more than ``max_reject_fraction`` of the items it processed
    were rejected. ``drift_reference`` (a head): tonight's new items are compared with what it trained on,
    the figures published as an artifact and the ``mmfeat.drift`` event."""
    logger = get_run_logger()
    # Validates every parameter (modality, extractor name, config keys and values) before any work.
    spec = lib.JobSpec(source, modality, extractor, tuple((overrides or {}).items()), dataset, store, allow_absolute_paths,
                       fit_on, rebind, label_from_name, limit)
    start = time.perf_counter()
    run_plan = plan_task(spec, shard_size, retry_rejects)
    name, shards = run_plan.feature_set, list(run_plan.shards)
    logger.info("%s: %d shard(s) to extract; manifest changes since the last run: %s", name, len(shards),
                run_plan.changes)
    artifact = create_progress_artifact(0.0, key=artifact_key("extract-progress", name), description=f"items of {name}")
    # Updated per batch of items, at most every 3 s (and a log line every 10 s), not per shard.
    live = Progress(run_plan.processed, name, tty=False, callback=lambda done, total: update_progress_artifact(
        artifact, 100.0 * done / total if total else 100.0))
    markers = []
    with tracking(live), library_logs_to_run():
        for marker in _run_shards(spec, shards):
            markers.append(marker)
            logger.info("shard %s: %d rows, %d rejected", marker["shard"], marker["rows"], marker["rejected"])
    live.close()
    summary = summary_task(store, run_plan.path, markers, max_reject_fraction, run_plan.lease)
    processed = run_plan.processed
    seconds = time.perf_counter() - start
    rate = processed / seconds if processed else 0.0
    changes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in run_plan.changes.items() if v) or "none"
    create_table_artifact([{"feature set": summary["feature_set"], "config_id": summary["config_id"][:12],
                            "rows": summary["rows"], "rejected": summary["rejected"], "extracted now": processed,
                            "items/s": round(rate, 1), "manifest changes": changes, "path": summary["path"]}],
                          key=artifact_key("extract-summary", name), description=f"extract summary of {name}")
    if summary["rejects_by_reason"]:
        from pipeline.rejects import reason as reject_reason

        create_table_artifact([{"reason": r, "count": c, "retryable": reject_reason(r).retryable,
                                "meaning": reject_reason(r).doc}
                               for r, c in sorted(summary["rejects_by_reason"].items(), key=lambda kv: -kv[1])],
                              key=artifact_key("extract-rejects", name), description=f"rejects of {name} by reason")
    if drift_reference and processed:
        _drift(summary["feature_set"], drift_reference, store)
    emit_event(FEATURE_SET_EVENT, resource={"prefect.resource.id": f"mmfeat.feature-set.{summary['feature_set']}",
                                            "prefect.resource.name": summary["feature_set"]},
               payload={"rows": summary["rows"], "rejected": summary["rejected"], "path": summary["path"]})
    # The run's final state carries the id in its message: deployment triggers on
    # prefect.flow-run.Completed pass it on as {{ flow_run.state.message }} (prefect.yaml). A run that
    # changed nothing (no item extracted, no label, split or meta edited) ends in a Completed state
    # named "Unchanged": its event is prefect.flow-run.Unchanged, so no retrain is triggered.
    unchanged = processed == 0 and not any(run_plan.changes.values())
    return Completed(name="Unchanged" if unchanged else "Completed", message=summary["feature_set"],
                     data=summary["feature_set"])
