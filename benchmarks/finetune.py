"""Fine-tuning against the frozen linear head, where frozen features are weak, and late vs early fusion.

    .venv/bin/python benchmarks/finetune.py [--data ../shared/data] [--sets digits keywords ...]
        [--fusion trec6 bbc questions-few] [--minutes 10] [--tops]

Image dev sets (devsets.py: generated locally, never committed): handwritten digits (scikit-learn's bundled
8x8 digits at 32 px), the photo subset downsampled to 32 px, spoken keywords as log-mel spectrogram images,
and the photos as stored (160 px, in distribution: fine-tuning should not lose there). Each gets the frozen
EfficientNet-Lite1 penultimate features + linear head, and the network fine-tuned on the images with the
default recipe under ``max_minutes`` (heads/network.py, heads/recipe.py; train minutes include the
extraction again with the tuned network). Text: TREC-6 questions with 16 examples per class, MiniLM pooled +
linear vs its last layer tuned from stored token states. ``--tops`` adds the tops tuned from stored
activations (last block, last two) on the image sets.

Fusion (``--fusion``): tf-idf and MiniLM alone, then fused with ``fusion=auto`` (early and late fitted, the
better on validation kept; both reported on test). Prints test accuracy (95% Wilson interval), extract
and train seconds, and the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
logging.getLogger("mmfeat").setLevel(logging.ERROR)
import devsets  # noqa: E402
from quality import wilson  # noqa: E402

IMAGE_SETS = ("digits", "photos32", "keywords", "photos160")
TOPS = [("fine-tuned top: last block + head conv", {"activations": "_blocks.19"}, {"head": "finetune"}),
        ("fine-tuned top: last 2 blocks + head conv", {"activations": "_blocks.18"}, {"head": "finetune"})]
TEXT_RUNS = [("frozen pooled MiniLM + linear head", {}, {}),
             ("fine-tuned top: last layer", {"frames": "true", "frames_layer": "4"}, {"head": "finetune"})]
FUSION_PARTS = [("tf-idf + linear", "tfidf", {}), ("MiniLM + linear", "bert", {})]


class Bench:
    def __init__(self, work: str, minutes: str, limit: int | None, device: str):
        self.work, self.minutes, self.rows, self.limit = work, minutes, [], limit
        self.device = {} if device == "auto" else {"device": device}
        self.gains: dict[str, float] = {}
        self.store = os.path.join(work, "store")

    def extract(self, manifest: str, modality: str, extractor: str, cfg: dict, dataset: str) -> tuple[str, float]:
        from pipeline.extract import extract

        start = time.perf_counter()
        s = extract(manifest, modality, extractor, {**cfg, **self.device}, dataset=dataset, store=self.store,
                    progress=False, limit=self.limit)
        return s["feature_set"], time.perf_counter() - start

    def head(self, sets: list[str], cfg: dict) -> tuple[dict, float]:
        from pipeline.heads import train_head

        start = time.perf_counter()
        card = train_head(sets, {**cfg, **self.device, "sklearn_baseline": "false"}, self.store,
                          os.path.join(self.work, "heads", str(len(self.rows))))
        return card, time.perf_counter() - start

    def add(self, label: str, name: str, accuracy: float, n: int, extract_s: float, train_s: float, note: str = ""):
        self.rows.append((label, name, wilson(accuracy, n), f"{extract_s:.1f}", f"{train_s:.1f}", note))
        print(self.rows[-1], file=sys.stderr, flush=True)


def tuned_note(card: dict) -> str:
    info = card["data"].get("finetune") or {}
    if info.get("kept_probe"):
        return f"kept the probe ({info.get('epochs_run', 0)} epochs tried)"
    if info.get("mode") == "network":
        return f"{info['train_size']} px, {info['epochs_run']} epochs" + (", budget-limited" * bool(info.get("budget_limited")))
    epoch = card["selected"]["epoch"]
    return f"best epoch {epoch}" if epoch else "kept the probe (epoch 0)"


def image_rows(bench: Bench, name: str, manifest: str, tops: bool) -> None:
    group = {"group": "speaker"} if name == "keywords" else {}
    base, extract_s = bench.extract(manifest, "image", "cnn", {}, name)
    frozen, s = bench.head([base], group)
    bench.add(name, "frozen penultimate + linear", frozen["metrics"]["accuracy"], frozen["metrics"]["n_test"],
              extract_s, s)
    card, s = bench.head([base], {**group, "head": "finetune", "max_minutes": bench.minutes})
    bench.add(name, f"network fine-tuned (default recipe, max_minutes={bench.minutes})", card["metrics"]["accuracy"],
              card["metrics"]["n_test"], 0.0, s, tuned_note(card))
    bench.gains[f"finetune_{name}_gain_points"] = round(100 * (card["metrics"]["accuracy"] - frozen["metrics"]["accuracy"]), 2)
    for label, extract_cfg, head_cfg in (TOPS if tops else []):
        top, extract_s = bench.extract(manifest, "image", "cnn", extract_cfg, name)
        card, s = bench.head([top], {**group, **head_cfg})
        bench.add(name, label, card["metrics"]["accuracy"], card["metrics"]["n_test"], extract_s, s, tuned_note(card))


def text_rows(bench: Bench, manifest: str) -> None:
    for label, extract_cfg, head_cfg in TEXT_RUNS:
        fs, extract_s = bench.extract(manifest, "text", "bert", extract_cfg, "questionsfew")
        card, s = bench.head([fs], head_cfg)
        bench.add("questions-few", label, card["metrics"]["accuracy"], card["metrics"]["n_test"], extract_s, s,
                  tuned_note(card) if head_cfg else "")


def fusion_rows(bench: Bench, name: str, manifest: str) -> None:
    sets, total = [], 0.0
    dataset = name.replace("-", "")
    for label, extractor, cfg in FUSION_PARTS:
        fs, extract_s = bench.extract(manifest, "text", extractor, cfg, dataset)
        card, s = bench.head([fs], {})
        bench.add(name, label, card["metrics"]["accuracy"], card["metrics"]["n_test"], extract_s, s)
        sets.append(fs)
        total += extract_s
    card, s = bench.head(sets, {"fusion": "auto"})
    fusion, n = card["data"]["fusion"], card["metrics"]["n_test"]
    weights = ", ".join(f"{p['weight']:.2f}" for p in fusion["late"]["parts"])
    bench.add(name, "tf-idf + MiniLM, early fusion", fusion["early"]["test_accuracy"], n, total, s,
              "chosen" * (fusion["chosen"] == "early"))
    bench.add(name, "tf-idf + MiniLM, late fusion", fusion["late"]["test_accuracy"], n, total, s,
              ("chosen; " * (fusion["chosen"] == "late")) + f"weights {weights}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--sets", nargs="*", default=list(IMAGE_SETS) + ["questions-few"],
                    help=f"image dev sets ({', '.join(IMAGE_SETS)}) and/or questions-few")
    ap.add_argument("--fusion", nargs="*", default=["trec6", "bbc", "questions-few"],
                    help="text sets for the fusion rows: trec6, bbc, questions-few")
    ap.add_argument("--minutes", default="10", help="max_minutes of the network fine-tune")
    ap.add_argument("--tops", action="store_true", help="also the tops tuned from stored activations")
    ap.add_argument("--limit", type=int, help="the first N rows of each manifest (make bench-gpu --tiny)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda: extraction and training")
    args = ap.parse_args()
    work = scratch_dir("mmfeat-finetune-")
    bench = Bench(work, args.minutes, args.limit, args.device)
    for name in args.sets:
        if name == "questions-few":
            text_rows(bench, devsets.make(name, args.data, work))
        elif name == "photos160":
            image_rows(bench, name, os.path.join(args.data, "imagenette160_subset", "manifest.csv"), args.tops)
        else:
            image_rows(bench, name, devsets.make(name, args.data, work), args.tops)
    manifests = {"trec6": os.path.join(args.data, "trec6", "manifest.csv"),
                 "bbc": os.path.join(args.data, "bbc_news", "manifest.csv")}
    for name in args.fusion:
        fusion_rows(bench, name, manifests.get(name) or devsets.make(name, args.data, work))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "no GPU"
    print(f"\nfine-tuning and fusion; {platform.machine()}, {os.cpu_count()} cores, {gpu}; peak RSS {peak:.0f} MiB\n")
    print("| set | features + head | test accuracy (95% CI) | extract s | train s | note |")
    print("|---|---|---|---|---|---|")
    for r in bench.rows:
        print("| " + " | ".join(r) + " |")
    print("RESULT " + json.dumps(bench.gains))


if __name__ == "__main__":
    main()
