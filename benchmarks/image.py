"""Image extraction throughput: model-only ceiling vs full pipeline (files -> Parquet) vs a naive loop.

Run: .venv/bin/python benchmarks/image.py [N_IMAGES]
Generates JPEGs at 32x32 (CIFAR-like) and ~500x375 (photo-like), then, in one run and with the same
model, precision and batch size: random tensors through the model (ceiling), `pipeline.extract`
into a fresh store (pipeline), and the classic notebook loop (PIL in the main process, fp32, batch
by batch) as the baseline.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch
from PIL import Image
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)


def make_jpegs(root: str, n: int, size: tuple[int, int]) -> str:
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    rows = []
    base = rng.integers(0, 255, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    for i in range(n):
        arr = np.kron(np.roll(base, i, axis=0), np.ones((8, 8, 1), np.uint8))[: size[1], : size[0]]
        Image.fromarray(arr).save(os.path.join(root, f"{i:06d}.jpg"), quality=90)
        rows.append((f"{i:06d}", f"{i:06d}.jpg", "x"))
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("id", "path", "label"), *rows])
    return manifest


def ceiling(ext, n: int) -> float:
    x = torch.randn(ext.batch_size, 3, ext.crop, ext.crop, device=ext.device)
    x = x.contiguous(memory_format=torch.channels_last)
    ext.forward_features(x)  # warm-up
    if ext.device.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while done < n:
        ext.forward_features(x)
        done += len(x)
    if ext.device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def naive(ext, manifest: str, n: int) -> float:
    from pipeline.extractors.image.decode import resize_crop_pil

    root = os.path.dirname(manifest)
    paths = [os.path.join(root, f"{i:06d}.jpg") for i in range(n)]
    from pipeline.extractors.image.models import PooledFeatures, load_backbone

    # The notebook way: a freshly loaded model in default memory format, fp32.
    model = PooledFeatures(load_backbone(ext.config.model, ext.config.weights).model, ext.config.layers).to(ext.device)
    start = time.perf_counter()
    for s in range(0, n, ext.batch_size):
        imgs = [resize_crop_pil(Image.open(p).convert("RGB"), ext.resize, ext.crop, "bilinear") for p in paths[s:s + ext.batch_size]]
        x = (torch.stack(imgs).float().to(ext.device) - ext.mean) / ext.std
        x = x.contiguous()
        with torch.no_grad():
            model(x).cpu().numpy()
    return n / (time.perf_counter() - start)


def main() -> None:
    from pipeline.extract import extract
    from pipeline.registry import create_extractor

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    ext = create_extractor("cnn")
    tmp = scratch_dir()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, device {ext.device}, dtype {ext.dtype}, "
          f"torch {torch.__version__}, batch {ext.batch_size}, {n} images per size")
    print(f"{'input':10} {'ceiling img/s':>14} {'pipeline img/s':>15} {'naive img/s':>12} {'pipe/ceiling':>13} {'pipe/naive':>11}")
    # One-time start-up outside the timings, as for the ceiling: model load and the decode workers'
    # forkserver (about 4 s here), paid once per process.
    extract(make_jpegs(os.path.join(tmp, "warm"), 64, (32, 32)), "image", "cnn", store=os.path.join(tmp, "store"),
            dataset="warm", progress=False)
    result = {}
    for label, size in (("32x32", (32, 32)), ("500x375", (500, 375))):
        manifest = make_jpegs(os.path.join(tmp, label), n, size)
        c = ceiling(ext, n)
        p = extract(manifest, "image", "cnn", store=os.path.join(tmp, "store"), dataset=f"bench{label.replace('x', '_')}",
                    progress=False)["items_per_s"]
        b = naive(ext, manifest, n)
        print(f"{label:10} {c:14.1f} {p:15.1f} {b:12.1f} {p / c:13.2f} {p / b:11.2f}")
        result.setdefault("image_32px_pipeline_over_ceiling", p / c)
        result.setdefault("image_32px_img_s", p)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("RESULT " + json.dumps({**result, "device": str(ext.device)}))  # read by benchmarks/gpu_suite.py


if __name__ == "__main__":
    main()
