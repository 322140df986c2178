"""Peak memory as data grows: each step at N and 10·N items, each in a fresh process (its ru_maxrss).

    .venv/bin/python benchmarks/memory.py [N]     (default 20000 texts; audio and images use N/100 and N/20)

Prints one table: peak RSS per step at N and 10·N, and the growth. Anything that grows with N beyond
the id list is a bug to fix (see README, Benchmarks).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
STEP = """
import json, resource, sys, logging
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)
sys.path.insert(0, {root!r})
logging.getLogger("mmfeat").setLevel(logging.ERROR)
kind, args = sys.argv[1], json.loads(sys.argv[2])
if kind == "extract":
    from pipeline.extract import extract
    extract(args["source"], args["modality"], args.get("extractor"), args.get("overrides"), dataset=args["dataset"],
            store=args["store"], progress=False, max_reject_fraction=1.0)
elif kind == "train":
    from pipeline.heads import train_head
    train_head([args["set"]], args["overrides"], args["store"], args["out"])
elif kind == "predict":
    from pipeline.heads import predict
    predict(args["head"], args["set"], args["store"])
elif kind == "query":
    from pipeline.store import FeatureStore
    FeatureStore(args["store"]).duckdb().execute("SELECT label, count(*), avg(list_sum(features)) FROM " + args["view"] + " GROUP BY label").fetchall()
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(kind: str, **args) -> float:
    r = subprocess.run([sys.executable, "-c", STEP.format(root=ROOT), kind, json.dumps(args)], capture_output=True,
                       text=True, timeout=1800)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return float(r.stdout.split("PEAK")[-1])


def data(work: str, n: int) -> dict[str, str]:
    from audio import make_clips
    from image import make_jpegs
    from nightly import write_manifest

    texts = os.path.join(work, f"texts{n}.jsonl")
    write_manifest(texts, n)
    return {"text": texts, "audio": make_clips(os.path.join(work, f"audio{n}"), max(8, n // 100), 1.0)[0],
            "image": make_jpegs(os.path.join(work, f"img{n}"), max(8, n // 20), (32, 32))}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    work = scratch_dir("mmfeat-memory-")
    rows: dict[str, list[float]] = {}
    for size in (n, 10 * n):
        src = data(work, size)
        store = os.path.join(work, f"store{size}")
        ds = f"news{size}"

        def put(name: str, value: float) -> None:
            rows.setdefault(name, []).append(value)
            print(f"  {name} at {size}: {value:.0f} MiB", file=sys.stderr, flush=True)

        put("extract text (word2vec)", measure("extract", source=src["text"], modality="text", extractor="word2vec",
                                               dataset=ds, store=store))
        put("extract audio (spectral, N/100 clips)", measure("extract", source=src["audio"], modality="audio",
                                                             dataset=f"a{size}", store=store))
        put("extract images (cnn, N/20 JPEGs)", measure("extract", source=src["image"], modality="image",
                                                        dataset=f"i{size}", store=store))
        from pipeline.store import FeatureStore

        name = next(fs.name for fs in FeatureStore(store).feature_sets(ds))
        for solver in ("lbfgs", "adamw"):
            put(f"train-head linear ({solver})", measure("train", set=name, store=store, out=os.path.join(work, f"h{size}{solver}"),
                                                        overrides={"solver": solver, "sklearn_baseline": "false"}))
        # A budget far under the features (N x 100 float32: 8 MB at N = 20k) forces the streamed solver.
        put("train-head linear (lbfgs, streamed: memory_gb=0.01)",
            measure("train", set=name, store=store, out=os.path.join(work, f"h{size}streamed"),
                    overrides={"memory_gb": "0.01", "sklearn_baseline": "false"}))
        put("predict", measure("predict", head=os.path.join(work, f"h{size}lbfgs"), set=name, store=store))
        put("query (DuckDB view, group by)", measure("query", store=store, view=f"news{size}__word2vec"))
    print(f"\nmmfeat peak RSS, N = {n:,} texts; {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}\n")
    print("| step | peak RSS at N (MiB) | at 10·N (MiB) | growth |")
    print("|---|---|---|---|")
    for step, (a, b) in rows.items():
        print(f"| {step} | {a:.0f} | {b:.0f} | {100 * (b - a) / a:+.0f}% |")


if __name__ == "__main__":
    main()
