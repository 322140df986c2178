"""Reliability stress: a kill storm, concurrent writer pairs, a fuzz corpus of every input format, and the
damage suite (benchmarks/damage.py: 24 kinds of store damage, races of warm processes, S3 kills).

    .venv/bin/python benchmarks/stress.py [--kills 20] [--pairs 8] [--fuzz 60] [--no-damage]

Each extract runs in its own process (so a crash, a hang or the memory it takes is measured, not
shared). Prints one table: inputs tried, crashes (tracebacks), hangs (over 120 s), duplicate ids,
non-finite feature rows, and the highest peak RSS of one extract process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data")
sys.path.insert(0, ROOT)
EXTRACT = ("import sys, json; from pipeline.extract import extract; from pipeline.errors import MmfeatError\n"
           "try:\n    s = extract(sys.argv[1], sys.argv[2], sys.argv[3] or None, json.loads(sys.argv[4]), store=sys.argv[5],"
           " shard_size=int(sys.argv[6]), max_reject_fraction=1.0)\nexcept MmfeatError as e:\n"
           "    print('USER-ERROR', e); sys.exit(2)\n")


def run_extract(manifest, modality, store, extractor="", overrides=None, shard=64, timeout=120, kill_after=None):
    """(exit code or 'hang'/'killed', stderr, peak RSS MiB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.Popen([sys.executable, "-c", EXTRACT, manifest, modality, extractor, json.dumps(overrides or {}),
                             store, str(shard)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after or timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        code = "killed" if kill_after else "hang"
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return code, err, peak


def check_store(store):
    """(duplicate ids over committed parts, non-finite rows, rows in the current view) for every set."""
    import numpy as np

    from pipeline.store import FeatureStore

    dupes = nonfinite = rows = 0
    for fs in FeatureStore(store).feature_sets():
        keys = fs.keys()["id"].to_pylist()
        dupes += len(keys) - len(set(keys))
        x = fs.numpy()[1]
        nonfinite += int((~np.isfinite(x)).any(axis=1).sum())
        rows += len(x)
    return dupes, nonfinite, rows


def kill_storm(work, kills):
    from helpers_stress import text_manifest

    manifest, store = text_manifest(work, 3000), os.path.join(work, "kill-store")
    for i in range(kills):
        run_extract(manifest, "text", store, "word2vec", {"min_count": "1"}, shard=random.choice([50, 100, 250]),
                    kill_after=random.uniform(1.5, 6.0))
    code, err, peak = run_extract(manifest, "text", store, "word2vec", {"min_count": "1"}, shard=100)
    dupes, nonfinite, rows = check_store(store)
    debris = sum(n.startswith((".staging", "part-")) for root, _, names in os.walk(store) for n in names) - \
        sum(len(fs.files()) for fs in __import__("pipeline.store", fromlist=["FeatureStore"]).FeatureStore(store).feature_sets())
    crashes = int(code not in (0, 2))
    return ("kill storm (SIGKILL mid-extract, then a rerun)", kills + 1, crashes, 0, dupes, nonfinite, peak,
            f"{rows} rows for 3000 ids, {debris} debris files")


def writer_pairs(work, pairs):
    from helpers_stress import text_manifest

    manifest = text_manifest(work, 2000)
    dupes_total = crashes = 0
    peak = 0.0
    for i in range(pairs):
        store = os.path.join(work, f"pair-store-{i}")
        procs = [subprocess.Popen([sys.executable, "-c", EXTRACT, manifest, "text", "word2vec", '{"min_count": "1"}',
                                   store, str(size)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for size in (100, 333)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            crashes += int(p.returncode not in (0, 2))
        code, err, peak_i = run_extract(manifest, "text", store, "word2vec", {"min_count": "1"}, shard=100)
        peak = max(peak, peak_i)
        dupes, _, rows = check_store(store)
        dupes_total += dupes + abs(rows - 2000)
    return ("concurrent writer pairs (different shard sizes)", pairs * 2, crashes, 0, dupes_total, 0, peak, "")


def fuzz(work, n):
    from helpers_stress import fuzz_corpus

    totals = {"inputs": 0, "crashes": 0, "hangs": 0, "nonfinite": 0, "peak": 0.0}
    for modality, manifest in fuzz_corpus(work, n):
        store = os.path.join(work, f"fuzz-store-{modality}")
        code, err, peak = run_extract(manifest, modality, store)
        totals["inputs"] += sum(1 for _ in open(manifest)) - 1
        totals["crashes"] += int(code not in (0, 2, "hang"))
        totals["hangs"] += int(code == "hang")
        if code not in (0, 2, "hang"):
            print(f"  crash on {manifest}:\n{err[-2000:]}", file=sys.stderr)
        totals["nonfinite"] += check_store(store)[1]
        totals["peak"] = max(totals["peak"], peak)
    return ("fuzz corpus (bit flips, truncation, headers; WAV, FLAC, PNG, JPEG, text)", totals["inputs"],
            totals["crashes"], totals["hangs"], 0, totals["nonfinite"], totals["peak"], "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--fuzz", type=int, default=60, help="mutated files per format")
    ap.add_argument("--no-damage", action="store_true", help="skip the damage suite (benchmarks/damage.py)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    random.seed(0)
    work = scratch_dir("mmfeat-stress-")
    rows = [kill_storm(work, args.kills), writer_pairs(work, args.pairs), fuzz(work, args.fuzz)]
    damaged = []
    if not args.no_damage:
        import damage

        texts = damage.manifests(work, args.data)
        damaged = damage.damage_suite(work, texts)
        rows += [damage.warm_races(work, texts["a"]), damage.s3_kills(work, texts["a"])]
    print(f"\nmmfeat reliability stress; {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}\n")
    print("| scenario | extract runs / inputs | crashes | hangs | duplicate ids | non-finite rows | peak RSS (MiB) | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tried, crashes, hangs, dupes, nonfinite, peak, notes in rows:
        print(f"| {name} | {tried} | {crashes} | {hangs} | {dupes} | {nonfinite} | "
              f"{'-' if peak is None else f'{peak:.0f}'} | {notes} |")
    if damaged:
        print("\n| damage to dataset a | crashes | whole-store failures | silent wrong features | lost rows "
              "| peak RSS (MiB) | reruns and fsck said |\n|---|---|---|---|---|---|---|")
        for kind, crashes, whole, wrong, lost, peak, said in damaged:
            print(f"| {kind} | {crashes} | {whole} | {wrong} | {lost} | {peak:.0f} | {said or 'healed'} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
