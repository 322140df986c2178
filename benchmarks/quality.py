"""Head accuracy per minute of compute on the dev datasets (../shared/data): mmfeat's defaults end to end
(extract -> train-head, linear head) beside the notebook recipe on the same split.

    .venv/bin/python benchmarks/quality.py [--data ../shared/data] [--only NAME ...] [--ablations]

Prints one table: accuracy with its 95% Wilson interval on each dataset's fixed test split, extract and
train seconds. ``--ablations`` adds the image-feature variants (normalization, flip TTA).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time

import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
logging.getLogger("mmfeat").setLevel(logging.ERROR)

RUNS = {  # dataset: (modality, [(extractor, overrides, note)])
    "imagenette160_subset": ("image", [("cnn", {}, "default")]),
    "bbc_news": ("text", [("bert", {}, "default"), ("word2vec", {}, ""), ("tfidf", {}, ""),
                          ("tfidf+bert", {}, "fusion")]),
    "trec6": ("text", [("bert", {}, "default"), ("word2vec", {}, ""), ("tfidf", {}, ""), ("tfidf+bert", {}, "fusion")]),
    "arabic_speech_commands10": ("audio", [("spectral", {}, "default"), ("spectral", {"preset": "speech"}, ""),
                                           ("spectral", {"preset": "classic193"}, "")]),
}
ABLATIONS = {"imagenette160_subset": [("cnn", {"normalization": "imagenet"}, "ImageNet mean/std"),
                                      ("cnn", {"normalization": "lite"}, "Lite's (x-127)/128"),
                                      ("cnn", {"flip_tta": "true"}, "flip TTA")]}


def wilson(acc: float, n: int) -> str:
    from pipeline.heads.metrics import wilson_interval

    lo, hi = wilson_interval(round(acc * n), n)
    return f"{100 * acc:.1f}% ({100 * lo:.1f}–{100 * hi:.1f})"


def ours(manifest: str, modality: str, extractor: str, overrides: dict, store: str, name: str):
    """Extract (each of ``a+b`` for a fused head: already stored sets cost nothing) and train a head."""
    from pipeline.extract import extract
    from pipeline.heads import train_head

    start = time.perf_counter()
    sets = [extract(manifest, modality, e, {k: str(v) for k, v in overrides.items()}, dataset=name, store=store,
                    progress=False, max_reject_fraction=1.0)["feature_set"] for e in extractor.split("+")]
    extract_s = time.perf_counter() - start
    start = time.perf_counter()
    card = train_head(sets, {"sklearn_baseline": "false"}, store, os.path.join(store, "_h", "-".join(sets).replace("/", "_")))
    return card, extract_s, time.perf_counter() - start, sets[0]


def split_xy(store: str, feature_set: str):
    from pipeline.store import FeatureStore

    t = FeatureStore(store).resolve(feature_set).table(columns=["features", "label", "split"])
    from pipeline.store import feature_matrix

    x, y, split = feature_matrix(t["features"]), np.array(t["label"].to_pylist()), np.array(t["split"].to_pylist())
    return x[split == "train"], y[split == "train"], x[split == "test"], y[split == "test"]


def sklearn_lr(xtr, ytr, xte, yte) -> float:
    """The notebook recipe on given features: StandardScaler + LogisticRegression (C=1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    return float((clf.fit(xtr, ytr).predict(xte) == yte).mean())


def text_recipes(manifest: str) -> list[tuple[str, float, float]]:
    """TF-IDF + LR (C tuned by 5-fold CV on train), and gensim Word2Vec (100-d, window 5, min_count 2,
    20 epochs, mean) + LR."""
    import csv

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    csv.field_size_limit(1 << 30)
    rows = list(csv.DictReader(open(manifest, encoding="utf-8")))
    tr = [r for r in rows if r["split"] == "train"]
    te = [r for r in rows if r["split"] == "test"]
    out = []
    start = time.perf_counter()
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    xtr = vec.fit_transform([r["text"] for r in tr])
    clf = LogisticRegressionCV(Cs=[0.1, 1, 10, 100, 1000], cv=5, max_iter=3000).fit(xtr, [r["label"] for r in tr])
    acc = float((clf.predict(vec.transform([r["text"] for r in te])) == np.array([r["label"] for r in te])).mean())
    out.append((f"TF-IDF (1-2 grams, sublinear) + LR, C={clf.C_[0]:g} by 5-fold CV", acc, time.perf_counter() - start))
    from gensim.models import Word2Vec

    from pipeline.extractors.text.common import tokenize_words

    start = time.perf_counter()
    toks = [tokenize_words(r["text"]) for r in rows]
    model = Word2Vec(sentences=toks, vector_size=100, window=5, min_count=2, epochs=20, workers=1, seed=1)

    def pool(words):
        known = [model.wv[w] for w in words if w in model.wv]
        return np.mean(known, 0) if known else np.zeros(100, np.float32)

    x = np.array([pool(t) for t in toks])
    split = np.array([r["split"] for r in rows])
    y = np.array([r["label"] for r in rows])
    acc = sklearn_lr(x[split == "train"], y[split == "train"], x[split == "test"], y[split == "test"])
    out.append(("gensim Word2Vec 20 epochs, mean + LR", acc, time.perf_counter() - start))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--ablations", action="store_true")
    args = ap.parse_args()
    store = scratch_dir("mmfeat-quality-")
    rows = []
    for name, (modality, runs) in RUNS.items():
        if args.only and name not in args.only:
            continue
        manifest = os.path.join(args.data, name, "manifest.csv")
        runs = runs + (ABLATIONS.get(name, []) if args.ablations else [])
        for extractor, overrides, note in runs:
            card, ex_s, tr_s, fs = ours(manifest, modality, extractor, overrides, store, name)
            m = card["metrics"]
            label = f"mmfeat `{extractor}`" + (f" {overrides}" if overrides else "") + (f" ({note})" if note else "")
            rows.append((name, label, wilson(m["accuracy"], m["n_test"]), f"{ex_s:.1f}", f"{tr_s:.1f}"))
            print(rows[-1], file=sys.stderr, flush=True)
            if not overrides and extractor in ("cnn", "bert", "word2vec", "spectral"):  # same features + sklearn LR
                start = time.perf_counter()
                acc = sklearn_lr(*split_xy(store, fs))
                rows.append((name, f"same `{extractor}` features + sklearn LR (C=1)", wilson(acc, m["n_test"]), "", f"{time.perf_counter() - start:.1f}"))
        if modality == "text":
            for recipe, acc, seconds in text_recipes(manifest):
                rows.append((name, recipe, wilson(acc, card["metrics"]["n_test"]), "", f"{seconds:.1f}"))
    print_table(f"mmfeat quality on the dev sets; {platform.machine()}, {os.cpu_count()} cores, python "
                f"{platform.python_version()}", "dataset", rows)


def print_table(title: str, first: str, rows) -> None:
    """A titled Markdown table: ``first``, features + head, accuracy (95% CI), extract s, train s."""
    print(f"\n{title}\n")
    print(f"| {first} | features + head | test accuracy (95% CI) | extract s | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
