"""The main job on sample_data: extract every modality, train a head per modality, print the results."""
from __future__ import annotations

import os

from .extract import extract
from .heads import train_head
from .store import FeatureStore

DEMO = (("image", "images/manifest.csv", "cnn"), ("text", "texts.jsonl", "bert"), ("audio", "audio/manifest.csv", "spectral"))


def run_demo(root: str = "sample_data", store: str | None = None) -> list[dict]:
    """Run the demo with every default; returns one result per modality."""
    results = []
    for modality, manifest, extractor in DEMO:
        summary = extract(os.path.join(root, manifest), modality, extractor, dataset=f"sample-{modality}", store=store)
        card = train_head([summary["feature_set"]], {"head": "linear"}, store)
        m = card["metrics"]
        print(f"[{modality}] {summary['feature_set']}: {summary['rows']} rows, {summary['rejected']} rejected "
              f"{summary['rejects_by_reason']}\n    parquet: {summary['path']}\n"
              f"    head: test accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} "
              f"(sklearn {m['sklearn_logreg']['accuracy']:.3f}, majority {m['majority_baseline_accuracy']:.3f}) -> {card['path']}")
        results.append({"summary": summary, "card": card})
    print(f"\nQuery it: mmfeat query \"SELECT * FROM sample_text__bert LIMIT 3\" --store {FeatureStore(store).uri}")
    return results
