"""Orchestration overhead: the same extraction as a plain library call and as the Prefect flow.

Run: .venv/bin/python benchmarks/orchestration.py [N_ITEMS] [MODALITY ...]
The sample dataset is scaled up to N items (default 10,000) per modality by repeating its files
under new ids; each run writes a fresh store at the default shard size. The flow runs under a
temporary local Prefect API (the same engine a worker uses). Library and flow runs alternate,
MMFEAT_BENCH_REPS times each (default 2); the table shows the best of each and lists every run.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
import tempfile
import time

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


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows import extract_flow
    from pipeline.extract import extract

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    modalities = sys.argv[2:] or ["text", "audio", "image"]
    extractors = {"text": "bert", "audio": "spectral", "image": "cnn"}
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {n} items per modality, default shard size")
    print(f"{'modality':9} {'extractor':10} {'library s':>10} {'flow s':>8} {'overhead':>9}", flush=True)
    with prefect_test_harness(server_startup_timeout=120):
        for modality in modalities:
            tmp = tempfile.mkdtemp()
            manifest = scaled_manifest(modality, n, tmp)
            ext = extractors[modality]
            warm = scaled_manifest(modality, 64, tempfile.mkdtemp())  # load the model once, outside the timing
            extract(warm, modality, ext, store=os.path.join(tmp, "warm"), dataset="warm", progress=False)
            if modality != "text":
                os.remove(warm)
            lib_s, flow_s = [], []
            for rep in range(REPS):  # alternate, so that drift of the machine hits both alike
                t = time.perf_counter()
                extract(manifest, modality, ext, store=os.path.join(tmp, f"lib{rep}"), dataset="b", progress=False)
                lib_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                extract_flow(manifest, modality, ext, store=os.path.join(tmp, f"flow{rep}"), dataset="b")
                flow_s.append(time.perf_counter() - t)
            best_lib, best_flow = min(lib_s), min(flow_s)
            print(f"{modality:9} {ext:10} {best_lib:10.1f} {best_flow:8.1f} {100 * (best_flow - best_lib) / best_flow:8.1f}%"
                  f"   (runs: library {', '.join(f'{v:.1f}' for v in lib_s)}; flow {', '.join(f'{v:.1f}' for v in flow_s)})")
            if modality != "text":
                os.remove(manifest)


if __name__ == "__main__":
    main()
