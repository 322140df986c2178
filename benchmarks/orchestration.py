"""Orchestration overhead: the same extraction as a plain library call and as the Prefect flow.

Run: .venv/bin/python benchmarks/orchestration.py [N_ITEMS] [MODALITY ...]
The sample dataset is scaled up to N items (default 10,000) per modality by repeating its files
under new ids; each run writes a fresh store at the default shard size. The flow runs under a
temporary local Prefect API (the same engine a worker uses).
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
    print(f"{'modality':9} {'extractor':10} {'library s':>10} {'flow s':>8} {'overhead':>9}")
    with prefect_test_harness(server_startup_timeout=120):
        for modality in modalities:
            tmp = tempfile.mkdtemp()
            manifest = scaled_manifest(modality, n, tmp)
            ext = extractors[modality]
            warm = scaled_manifest(modality, 64, tempfile.mkdtemp())  # load the model once, outside the timing
            extract(warm, modality, ext, store=os.path.join(tmp, "warm"), dataset="warm", progress=False)
            if modality != "text":
                os.remove(warm)
            t = time.perf_counter()
            extract(manifest, modality, ext, store=os.path.join(tmp, "lib"), dataset="b", progress=False)
            lib_s = time.perf_counter() - t
            t = time.perf_counter()
            extract_flow(manifest, modality, ext, store=os.path.join(tmp, "flow"), dataset="b")
            flow_s = time.perf_counter() - t
            print(f"{modality:9} {ext:10} {lib_s:10.1f} {flow_s:8.1f} {100 * (flow_s - lib_s) / flow_s:8.1f}%")
            if modality != "text":
                os.remove(manifest)


if __name__ == "__main__":
    main()
