"""Parquet encodings for feature columns: zstd alone vs zstd + BYTE_STREAM_SPLIT, on real embeddings.

Run: .venv/bin/python benchmarks/store_write.py [N_TEXTS]
Features are real MiniLM embeddings of generated sentences and EfficientNet-Lite0 features of
generated images (random floats would not compress at all and would say nothing).
"""
from __future__ import annotations

import io
import os
import platform
import resource
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)


def real_features(n: int) -> dict[str, np.ndarray]:
    from PIL import Image

    from pipeline.registry import ItemBatch, create_extractor

    rng = np.random.default_rng(0)
    words = "market team recipe chip season oven league cloud flour striker data sauce goal app butter".split()
    texts = [" ".join(rng.choice(words, rng.integers(8, 30))) for _ in range(n)]
    bert = create_extractor("bert").extract(ItemBatch([str(i) for i in range(n)], texts, "text")).features
    import tempfile

    paths = []
    tmp = scratch_dir()
    for i in range(min(n, 512)):
        arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        arr[rng.integers(0, 32):, rng.integers(0, 32):] = rng.integers(0, 255, 3)
        paths.append(os.path.join(tmp, f"{i}.png"))
        Image.fromarray(arr).save(paths[-1])
    cnn = create_extractor("cnn").extract(ItemBatch([str(i) for i in range(len(paths))], paths)).features
    return {"bert (384-d)": bert, "cnn (1280-d)": cnn}


def measure(matrix: np.ndarray, options: dict) -> tuple[int, float, float]:
    n, dim = matrix.shape
    table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)})
    best_w = best_r = float("inf")
    for _ in range(3):
        buf = io.BytesIO()
        t = time.perf_counter()
        pq.write_table(table, buf, **options)
        best_w = min(best_w, time.perf_counter() - t)
        t = time.perf_counter()
        pq.read_table(io.BytesIO(buf.getvalue()))
        best_r = min(best_r, time.perf_counter() - t)
    return len(buf.getvalue()), matrix.nbytes / best_w / 1e6, matrix.nbytes / best_r / 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    variants = {"zstd(3) [baseline]": dict(compression="zstd", compression_level=3),
                "zstd(3) + byte_stream_split [store default]": dict(compression="zstd", compression_level=3,
                                                                    use_dictionary=False,
                                                                    use_byte_stream_split=["features.list.element"]),
                "snappy": dict(compression="snappy")}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pyarrow {pa.__version__}")
    print(f"{'features':14} {'encoding':44} {'bytes/value':>11} {'ratio':>6} {'write MB/s':>10} {'read MB/s':>10}")
    for name, matrix in real_features(n).items():
        for label, opts in variants.items():
            size, w, r = measure(matrix, opts)
            print(f"{name:14} {label:44} {size / matrix.size:11.3f} {matrix.nbytes / size:6.3f} {w:10.0f} {r:10.0f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
