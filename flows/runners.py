"""Task runners for shard tasks: Prefect's local thread pool, or Dask (an existing cluster or a LocalCluster)."""
from __future__ import annotations

import os
from typing import Any


def task_runner(kind: str | None = None, address: str | None = None, workers: int | None = None) -> Any:
    """``local`` (default) or ``dask``; settable by env: MMFEAT_TASK_RUNNER, MMFEAT_DASK_ADDRESS, MMFEAT_DASK_WORKERS.

    With ``dask`` and an address, shard tasks go to that cluster's workers (any number of machines);
    without one, a LocalCluster of ``workers`` single-threaded processes is started. On multi-GPU
    hosts start the cluster with dask-cuda's ``LocalCUDACluster`` (one worker per GPU) and pass its address.
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    kind = kind or os.environ.get("MMFEAT_TASK_RUNNER", "local")
    address = address or os.environ.get("MMFEAT_DASK_ADDRESS")
    workers = workers or int(os.environ.get("MMFEAT_DASK_WORKERS", "2"))
    if kind == "local":
        return ThreadPoolTaskRunner(max_workers=1)  # one extractor at a time: it already uses every core
    if kind != "dask":
        raise ValueError(f"task runner must be local or dask; got {kind!r}")
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
