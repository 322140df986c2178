"""Orchestration overhead: the same extraction as a plain library call and as the Prefect flow.

Run: .venv/bin/python benchmarks/orchestration.py [N_ITEMS] [MODALITY ...]
The sample dataset is scaled up to N items (default 10,000) per modality by repeating its files
under new ids; each run writes a fresh store at the default shard size. The flow runs under a
temporary local Prefect API (the same engine a worker uses). Library and flow runs alternate,
MMFEAT_BENCH_REPS times each (default 2); the table shows the best of each and lists every run, and
the CPU seconds the temporary server used during the flow run (on this 2-core machine they are taken
from the extraction). Since a 5% difference is within this machine's run-to-run drift, the benchmark
first measures the orchestration cost itself on 100 texts (flow minus library, median of 5 pairs, with
1 and with 10 shards) and reports it as a share of each modality's library time ("cost/library").
"""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data")
REPS = int(os.environ.get("MMFEAT_BENCH_REPS", "2"))


def scaled_manifest(modality: str, n: int, tmp: str) -> str:
    if modality == "text":
        rows = [json.loads(line) for line in open(os.path.join(SAMPLE, "texts.jsonl"))]
        path = os.path.join(tmp, "texts.jsonl")
        with open(path, "w") as f:
            for i in range(n):
                r = rows[i % len(rows)]
                f.write(json.dumps({**r, "id": f"{i:07d}", "text": f"{r['text']} {i}" if r["text"].strip() else r["text"]}) + "\n")
        return path
    folder = "images" if modality == "image" else "audio"
    rows = list(csv.DictReader(open(os.path.join(SAMPLE, folder, "manifest.csv"))))
    path = os.path.join(SAMPLE, folder, f".bench-{n}.csv")  # paths resolve inside the sample folder
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for i in range(n):
            w.writerow({**rows[i % len(rows)], "id": f"{i:07d}"})
    return path


def _children_cpu() -> float:
    """CPU seconds used so far by this process's children: the temporary Prefect server (and the
    decode workers, which the library run has too). On a real deployment the server runs elsewhere."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _no_heartbeats():
    """Prefect 3.9 joins the flow-run heartbeat thread at the end of every run, and that thread sleeps
    in 1-s steps: 0-1 s per run. Heartbeats only feed zombie-run detection; they can be turned off
    from Python only (the environment variable does not parse a null)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _paired(extract, extract_flow, manifest, modality, ext, tmp, reps, shard_size, heartbeats=True):
    """Library and flow runs alternated (machine drift hits both alike): seconds of each, server CPU s;
    with ``heartbeats=False`` a third run per rep: the flow without Prefect's flow-run heartbeats."""
    lib_s, flow_s, server_s, quiet_s = [], [], [], []
    for rep in range(reps):
        t = time.perf_counter()
        extract(manifest, modality, ext, store=os.path.join(tmp, f"lib{shard_size}-{rep}"), dataset="b",
                progress=False, shard_size=shard_size)
        lib_s.append(time.perf_counter() - t)
        server_cpu = _children_cpu()
        t = time.perf_counter()
        extract_flow(manifest, modality, ext, store=os.path.join(tmp, f"flow{shard_size}-{rep}"), dataset="b",
                     shard_size=shard_size)
        flow_s.append(time.perf_counter() - t)
        server_s.append(_children_cpu() - server_cpu)
        if not heartbeats:
            with _no_heartbeats():
                t = time.perf_counter()
                extract_flow(manifest, modality, ext, store=os.path.join(tmp, f"quiet{shard_size}-{rep}"), dataset="b",
                             shard_size=shard_size)
                quiet_s.append(time.perf_counter() - t)
    return (lib_s, flow_s, server_s, quiet_s) if not heartbeats else (lib_s, flow_s, server_s)


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows import extract_flow
    from pipeline.extract import DEFAULT_SHARD_SIZE, extract

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    modalities = sys.argv[2:] or ["text", "audio", "image"]
    extractors = {"text": "bert", "audio": "spectral", "image": "cnn"}
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {n} items per modality, default shard size")
    with prefect_test_harness(server_startup_timeout=120):
        # The orchestration cost itself, on 100 texts (so that the extraction's own noise is small):
        # once per flow run, and per shard task (10 shards of 10 vs 1 shard of 100).
        tmp = scratch_dir()
        small = scaled_manifest("text", 100, tmp)
        extract(small, "text", "bert", store=os.path.join(tmp, "warm"), dataset="warm", progress=False)
        extract_flow(small, "text", "bert", store=os.path.join(tmp, "warmflow"), dataset="warm")
        lib1, flow1, _, quiet1 = _paired(extract, extract_flow, small, "text", "bert", tmp, 5, 100, heartbeats=False)
        one = statistics.median(f - l for l, f in zip(lib1, flow1))
        one_quiet = statistics.median(f - l for l, f in zip(lib1, quiet1))
        ten = statistics.median(f - l for l, f, _ in zip(*_paired(extract, extract_flow, small, "text", "bert", tmp, 5, 10)))
        per_shard = max(ten - one, 0.0) / 9
        print(f"flow run overhead: {one:.2f} s per run (median of 5), {one_quiet:.2f} s without flow-run heartbeats; "
              f"{per_shard * 1000:.0f} ms per extra shard task")
        print(f"{'modality':9} {'extractor':10} {'library s':>10} {'flow s':>8} {'overhead':>9} {'server CPU s':>12} "
              f"{'cost/library':>13} {'no-heartbeat flow s':>20} {'overhead':>9}", flush=True)
        for modality in modalities:
            tmp = scratch_dir()
            manifest = scaled_manifest(modality, n, tmp)
            ext = extractors[modality]
            warm = scaled_manifest(modality, 64, scratch_dir())  # load the model once, outside the timing
            extract(warm, modality, ext, store=os.path.join(tmp, "warm"), dataset="warm", progress=False)
            if modality != "text":
                os.remove(warm)
            lib_s, flow_s, server_s, quiet_s = _paired(extract, extract_flow, manifest, modality, ext, tmp, REPS,
                                                       DEFAULT_SHARD_SIZE, heartbeats=False)
            best_lib, best_flow, best_quiet = min(lib_s), min(flow_s), min(quiet_s)
            shards = -(-n // DEFAULT_SHARD_SIZE)
            cost = one + per_shard * (shards - 1)  # the orchestration cost measured above, for this many shards
            print(f"{modality:9} {ext:10} {best_lib:10.1f} {best_flow:8.1f} {100 * (best_flow - best_lib) / best_flow:8.1f}% "
                  f"{min(server_s):12.1f} {100 * cost / (best_lib + cost):12.1f}% {best_quiet:20.1f} "
                  f"{100 * (best_quiet - best_lib) / best_quiet:8.1f}%   (runs: library "
                  f"{', '.join(f'{v:.1f}' for v in lib_s)}; flow {', '.join(f'{v:.1f}' for v in flow_s)}; "
                  f"no heartbeats {', '.join(f'{v:.1f}' for v in quiet_s)})", flush=True)
            if modality != "text":
                os.remove(manifest)


if __name__ == "__main__":
    main()
