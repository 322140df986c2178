"""A scale model of the cluster: the real `extract` flow on Dask with a stand-in extractor (the same
interface, a fixed cost per item, no model) at many small shards and 1, 2, 4, 8 workers.

    .venv/bin/python benchmarks/scale_model.py [SHARDS] [ITEMS_PER_SHARD] [MS_PER_ITEM]   (default 1000 10 2)

The stand-in sleeps, so workers overlap even on 2 cores, as GPU workers would. Prints: wall time,
shards/s, the per-shard coordination overhead (wall minus the ideal compute time, per shard and worker
slot), the store's commit throughput for one writer (no extraction), and the extrapolated limit: the
shard rate at which the coordinator (Prefect + Dask) or the commits saturate.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def write_texts(path: str, n: int) -> str:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"s{i:07d}", "text": f"item {i}", "label": "ab"[i % 2]}) + "\n")
    return path


def commit_rate(work: str, shards: int, per_shard: int) -> float:
    """Shards/s that one process commits with a zero-cost extractor: the store's side of the limit."""
    from pipeline.extract import extract

    manifest = write_texts(os.path.join(work, "commit.jsonl"), shards * per_shard)
    start = time.perf_counter()
    extract(manifest, "text", "standin", {"ms_per_item": "0"}, store=os.path.join(work, "commit-store"),
            shard_size=per_shard, progress=False)
    return shards / (time.perf_counter() - start)


def flow_run(work: str, workers: int, shards: int, per_shard: int, ms: float) -> float:
    from flows import extract_flow
    from flows.runners import task_runner

    manifest = write_texts(os.path.join(work, f"flow{workers}.jsonl"), shards * per_shard)
    flow = extract_flow.with_options(task_runner=task_runner("dask", workers=workers))
    start = time.perf_counter()
    flow(manifest, "text", "standin", {"ms_per_item": str(ms)}, store=os.path.join(work, f"store{workers}"),
         shard_size=per_shard)
    return time.perf_counter() - start


def main() -> None:
    shards = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    per_shard = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    ms = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    os.environ["MMFEAT_PLUGINS"] = "standin"  # Dask workers import the stand-in too
    os.environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), ROOT,
                                                os.environ.get("PYTHONPATH", "")])
    import logging

    logging.getLogger("mmfeat").setLevel(logging.ERROR)
    from prefect.testing.utilities import prefect_test_harness

    work = scratch_dir("mmfeat-scale-")
    commits = commit_rate(work, shards, per_shard)
    print(f"  store commits, one writer: {commits:.1f} shards/s", file=sys.stderr, flush=True)
    rows, failed = [], {}
    with prefect_test_harness(server_startup_timeout=120):
        for workers in (1, 2, 4, 8):
            try:
                wall = flow_run(work, workers, shards, per_shard, ms)
            except Exception as exc:  # the coordinator gave out: that is a result, not a crash of the benchmark
                failed[workers] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                continue
            ideal = shards * per_shard * ms / 1000 / workers
            rows.append((workers, wall, shards / wall, (wall - ideal) * workers / shards * 1000))
            print(f"  {workers} workers: {wall:.1f} s", file=sys.stderr, flush=True)
    overhead_ms = min(r[3] for r in rows)
    print(f"\nmmfeat scale model: {shards} shards x {per_shard} items x {ms} ms/item (stand-in), Dask LocalCluster, "
          f"Prefect test server (SQLite); {platform.machine()}, {os.cpu_count()} cores\n")
    print("| workers | wall s | shards/s | overhead per shard and worker (ms) |")
    print("|---|---|---|---|")
    for workers, wall, rate, over in rows:
        print(f"| {workers} | {wall:.1f} | {rate:.1f} | {over:.0f} |")
    for workers, why in failed.items():
        print(f"| {workers} | failed | — | {why} |")
    best = max(r[2] for r in rows)
    print(f"\nstore commits, one writer, no extraction: {commits:.1f} shards/s")
    limit = min(best, commits)
    print(f"coordinator ceiling observed: {best:.1f} shards/s (Prefect task runs + Dask scheduling, server on the "
          f"same cores); the run is bound by min(workers / seconds per shard, {limit:.1f} shards/s). So W workers "
          f"stay busy while a shard carries at least W / {limit:.1f} s of work: 64 GPU workers need shards of "
          f"{64 / limit:.0f} s or more. Lowest coordination cost seen: {overhead_ms:.0f} ms per shard per worker slot.")


if __name__ == "__main__":
    main()
