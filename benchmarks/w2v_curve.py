"""Word2Vec with mmfeat's defaults (epochs from the corpus size) vs the gensim notebook recipe (20 epochs),
as the training corpus grows: accuracy of a linear head on each dev text set's fixed test split.

    .venv/bin/python benchmarks/w2v_curve.py [--data ../shared/data] [--sizes 500 1000 2000 4000 0]

Each size takes a seeded, stratified subsample of the train split (0: all of it); the test split is the
same at every size. Both recipes see the same texts (train subsample + test, no labels of test).
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
logging.getLogger("mmfeat").setLevel(logging.ERROR)
from quality import sklearn_lr, wilson  # noqa: E402  (benchmarks/ is the script's folder)


def subsample(rows: list[dict], size: int, seed: int = 0) -> list[dict]:
    train = [r for r in rows if r["split"] == "train"]
    if not size or size >= len(train):
        return rows
    rng = np.random.default_rng(seed)
    labels = np.array([r["label"] for r in train])
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        keep += list(rng.permutation(idx)[:max(1, round(size * len(idx) / len(train)))])
    return [train[i] for i in sorted(keep)] + [r for r in rows if r["split"] == "test"]


def mmfeat_default(rows: list[dict], folder: str) -> tuple[float, int, float, dict]:
    from pipeline.extract import extract
    from pipeline.heads import train_head

    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "label", "split"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("id", "text", "label", "split")} for r in rows)
    start = time.perf_counter()
    s = extract(manifest, "text", "word2vec", {}, dataset="curve", store=folder, progress=False, max_reject_fraction=1.0)
    card = train_head([s["feature_set"]], {"sklearn_baseline": "false"}, folder, os.path.join(folder, "head"))
    from pipeline.store import FeatureStore

    training = FeatureStore(folder).resolve(s["feature_set"]).manifest["runtime"].get("training", {})
    return card["metrics"]["accuracy"], card["metrics"]["n_test"], time.perf_counter() - start, training


def gensim_recipe(rows: list[dict]) -> float:
    from gensim.models import Word2Vec

    from pipeline.extractors.text.common import tokenize_words

    toks = [tokenize_words(r["text"]) for r in rows]
    model = Word2Vec(sentences=toks, vector_size=100, window=5, min_count=2, epochs=20, workers=1, seed=1)
    x = np.array([np.mean([model.wv[w] for w in t if w in model.wv], 0) if any(w in model.wv for w in t)
                  else np.zeros(100, np.float32) for t in toks])
    split, y = np.array([r["split"] for r in rows]), np.array([r["label"] for r in rows])
    return sklearn_lr(x[split == "train"], y[split == "train"], x[split == "test"], y[split == "test"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--datasets", nargs="*", default=["bbc_news", "trec6"])
    ap.add_argument("--sizes", nargs="*", type=int, default=[500, 1000, 2000, 4000, 0])
    args = ap.parse_args()
    csv.field_size_limit(1 << 30)
    out = []
    for name in args.datasets:
        rows = list(csv.DictReader(open(os.path.join(args.data, name, "manifest.csv"), encoding="utf-8")))
        n_train = sum(r["split"] == "train" for r in rows)
        for size in sorted({min(s or n_train, n_train) for s in args.sizes}):
            part = subsample(rows, size)
            with tempfile.TemporaryDirectory() as folder:
                acc, n_test, seconds, training = mmfeat_default(part, folder)
            words = training.get("corpus_words", "?")
            out.append((name, sum(r["split"] == "train" for r in part), words, training.get("epochs", "?"),
                        wilson(acc, n_test), wilson(gensim_recipe(part), n_test), f"{seconds:.1f}"))
            print(out[-1], file=sys.stderr, flush=True)
    print(f"\nword2vec defaults vs the gensim recipe as the corpus grows; {platform.machine()}, {os.cpu_count()} cores\n")
    print("| dataset | train texts | corpus words | epochs (auto) | mmfeat `word2vec` defaults | gensim 20 epochs + LR | mmfeat s |")
    print("|---|---|---|---|---|---|---|")
    for r in out:
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
