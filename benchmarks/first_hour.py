"""What a newcomer waits for: CLI start-up (``--help``, ``describe``, an argument error) and the no-op nightly
rerun of N texts (nothing changed: no model may load) as a CLI call and as the Prefect flow.

    .venv/bin/python benchmarks/first_hour.py [N]        (default 100000)

Baselines in the same run: what the CLI imported at start before its imports were made lazy (the
extraction stack: ``pipeline.extract`` with torch and transformers), and the no-op rerun as an in-process
library call (the floor the CLI and the flow add their start-up to). Each timing is the best of 3 fresh
processes; every row is measured in this run.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nightly import write_manifest  # noqa: E402
from scratch import scratch_dir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
FLOW = ("import sys, logging; from flows.extract import extract_flow; "
        "extract_flow(sys.argv[1], 'text', 'word2vec', store=sys.argv[2])")


def best_of(cmd: list[str], env: dict, expect: int = 0, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert r.returncode == expect, (cmd, r.returncode, r.stderr[-2000:])
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    work = scratch_dir("mmfeat-first-hour-")
    manifest, store = os.path.join(work, "news.jsonl"), os.path.join(work, "store")
    env = {**os.environ, "PYTHONPATH": ROOT, "PREFECT_HOME": os.path.join(work, "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # the flow runs under a temporary local API, as on a laptop
    mmfeat = os.path.join(BIN, "mmfeat")
    rows = [("`mmfeat --help`", best_of([mmfeat, "--help"], env)),
            ("`mmfeat describe`", best_of([mmfeat, "describe"], env)),
            ("`mmfeat extract` with a misspelt option (exit 2)", best_of([mmfeat, "extract", "x", "--sett", "a"], env, 2)),
            ("baseline: importing the extraction stack (what start-up cost before lazy imports)",
             best_of([sys.executable, "-c", "import pipeline.extract, torch, transformers"], env))]
    write_manifest(manifest, n)
    from pipeline.extract import extract

    start = time.perf_counter()
    extract(manifest, "text", "word2vec", store=store, progress=False)
    first = time.perf_counter() - start
    start = time.perf_counter()
    s = extract(manifest, "text", "word2vec", store=store, progress=False)
    library = time.perf_counter() - start
    assert s["processed"] == 0, s
    cli = best_of([mmfeat, "extract", manifest, "--modality", "text", "--extractor", "word2vec", "--store", store,
                   "--json"], env)
    flow = best_of([sys.executable, "-c", FLOW, manifest, store], env, reps=2)
    rows += [(f"first extract of {n:,} texts (word2vec), in process", first),
             ("no-op rerun, in process (library call; baseline)", library),
             ("no-op rerun, CLI (a fresh process)", cli),
             ("no-op rerun, Prefect flow (a fresh process, temporary local API)", flow)]
    loaded = subprocess.run([sys.executable, "-c", "import sys, pipeline.cli; print('torch' in sys.modules)"],
                            env=env, capture_output=True, text=True).stdout.strip()
    print(f"\nmmfeat first hour; {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"torch imported by `import pipeline.cli`: {loaded}\n")
    print("| what | seconds (best of 3 processes; flow: of 2) |\n|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
