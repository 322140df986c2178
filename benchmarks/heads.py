"""Head training: mmfeat's linear head vs scikit-learn LogisticRegression on the same features.

Run: .venv/bin/python benchmarks/heads.py [ROWS ...]   (default: 10000 100000)
Features are generated like pooled CNN features (1280 dims, non-negative, correlated through a
low-rank factor, 10 classes with overlapping means) and written to a fresh store. In one run, on
the same standardized features and the same train/val/test split:
  - mmfeat lbfgs: `train_head` (linear, its whole 5-penalty L2 sweep, exact fits, chosen on validation);
  - mmfeat lbfgs C=1: one exact fit at sklearn's default penalty (the same work as sklearn C=1);
  - mmfeat adamw: the same sweep trained by mini-batch AdamW with early stopping (stacked);
  - sklearn C=1: LogisticRegression(lbfgs), one fit at its default C;
  - sklearn sweep: the same 5 penalties (C = 1/(l2·n_train)) chosen on validation, as mmfeat does.
Reports training seconds, test accuracy, peak RSS and the machine.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np
import torch

DIM, CLASSES = 1280, 10


def make_features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(64, DIM)).astype(np.float32)
    centers = rng.normal(size=(CLASSES, 64)).astype(np.float32) * 0.35
    y = rng.integers(0, CLASSES, n)
    z = centers[y] + rng.normal(size=(n, 64)).astype(np.float32)
    x = np.maximum(z @ factors / 8 + rng.normal(size=(n, DIM)).astype(np.float32) * 0.5, 0)  # ReLU-like
    return x.astype(np.float32), y


def write_set(store: str, x: np.ndarray, y: np.ndarray) -> str:
    from pipeline.config import sha256_text
    from pipeline.store import FeatureStore, import_arrays

    prov = {"format": 2, "dataset": f"bench{len(x)}", "extractor": "synthetic", "extractor_version": "1",
            "config": {}, "config_id": sha256_text(f"bench{len(x)}"), "weights_sha256": None, "dim": DIM,
            "versions": {}, "created": "2026-01-01T00:00:00+00:00", "frame_dim": None}
    ids = [f"i{i:07d}" for i in range(len(x))]
    return import_arrays(FeatureStore(store), prov, ids, x, [f"c{v}" for v in y]).name


def sklearn_fit(x, y, xv, yv, xt, yt, cs) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=1000, class_weight="balanced").fit(x, y)
        score = clf.score(xv, yv) if len(cs) > 1 else 0.0
        if best is None or score > best[0]:
            best = (score, clf)
    return time.perf_counter() - start, float(best[1].score(xt, yt)), best[1].C


def main() -> None:
    from pipeline.heads import HeadConfig, train_head
    from pipeline.heads.config import DEFAULT_L2
    from pipeline.heads.data import joined_table, load_head_data
    from pipeline.store import FeatureStore

    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    cfg = HeadConfig()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), cuda "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}; {DIM} dims, {CLASSES} classes")
    print(f"{'rows':>8} {'model':28} {'train s':>8} {'test acc':>9} {'vs sklearn C=1':>15} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x, y = make_features(n)
            store = os.path.join(tmp, "store")
            name = write_set(store, x, y)
            card = train_head([name], {"sklearn_baseline": False, "solver": "lbfgs"}, store, os.path.join(tmp, f"head{n}"))
            ours_s, ours_acc = card["train_seconds"], card["metrics"]["accuracy"]
            data = load_head_data(joined_table([FeatureStore(store).resolve(name)], cfg.missing), "label", cfg)
            mean, std = data.train.x.mean(0), np.maximum(data.train.x.std(0), 1e-6)
            z = [(s.x - mean) / std for s in (data.train, data.val, data.test)]
            one_s, one_acc, _ = sklearn_fit(z[0], data.train.y, z[1], data.val.y, z[2], data.test.y, [1.0])
            cs = [1.0 / (l2 * len(data.train.y)) for l2 in DEFAULT_L2]
            sweep_s, sweep_acc, sweep_c = sklearn_fit(z[0], data.train.y, z[1], data.val.y, z[2], data.test.y, cs)
            single = train_head([name], {"sklearn_baseline": False, "l2_penalties": [1.0 / len(data.train.y)]}, store,
                                os.path.join(tmp, f"single{n}"))
            adamw = train_head([name], {"sklearn_baseline": False, "solver": "adamw"}, store, os.path.join(tmp, f"adamw{n}"))
            rows = [(f"mmfeat lbfgs sweep of {len(cs)}", ours_s, ours_acc),
                    ("mmfeat lbfgs C=1", single["train_seconds"], single["metrics"]["accuracy"]),
                    (f"mmfeat adamw sweep of {len(cs)}", adamw["train_seconds"], adamw["metrics"]["accuracy"]),
                    ("sklearn lbfgs C=1", one_s, one_acc), (f"sklearn lbfgs sweep of {len(cs)}", sweep_s, sweep_acc)]
            for label, seconds, acc in rows:
                print(f"{n:>8} {label:28} {seconds:8.2f} {acc:9.4f} {100 * (acc - one_acc):+14.2f}p "
                      f"{one_s / seconds:8.2f}x")
            print(f"{'':>8} selected: mmfeat l2={card['selected']['l2']} (epoch {card['selected']['epoch']}), "
                  f"sklearn sweep C={sweep_c:.3g}; on {card['device']}")
            result = {"heads_sweep_speedup_vs_sklearn": sweep_s / ours_s, "device": card["device"], "rows": n}
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("RESULT " + json.dumps(result))  # read by benchmarks/gpu_suite.py


if __name__ == "__main__":
    main()
