"""Frozen features + linear head vs the pretrained top fine-tuned on stored activations, on the dev photos.

    .venv/bin/python benchmarks/finetune.py [--data ../shared/data] [--epochs 300]

For the photo subset at its own 160 px and downsampled to 32 px (small photos, upsampled by the default
resize): EfficientNet-Lite1 (the default) penultimate features + linear head; its last block (and the
last two) fine-tuned with the head conv and a new classifier from the stored activations of the block
below; and the network itself fine-tuned on the images (its last 4 blocks, and all layers: heads/network.py,
the train time including the extraction again with the tuned weights). Prints test accuracy (95% Wilson interval), extract and train seconds, and the peak RSS.
"""
from __future__ import annotations

import argparse
import csv
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
from quality import print_table, wilson  # noqa: E402  (benchmarks/ is the script's folder)

RUNS = [("frozen penultimate + linear head", {}, {}),
        ("fine-tuned top: last block + head conv", {"activations": "_blocks.19"}, {"head": "finetune"}),
        ("fine-tuned top: last 2 blocks + head conv", {"activations": "_blocks.18"}, {"head": "finetune"}),
        ("fine-tuned network on images: last 4 blocks", {}, {"head": "finetune", "tune_blocks": "4"}),
        ("fine-tuned network on images: all layers", {}, {"head": "finetune"})]
# Questions (TREC-6): MiniLM pooled + linear head; a sequence head on its last-layer token states; its
# last layer (and last two) tuned from the stored token states of the layer below.
TEXT_RUNS = [("frozen pooled MiniLM + linear head", {}, {}),
             ("sequence head on last-layer token states", {"frames": "true"}, {"head": "sequence"}),
             ("fine-tuned top: last layer", {"frames": "true", "frames_layer": "4"}, {"head": "finetune"}),
             ("fine-tuned top: last 2 layers", {"frames": "true", "frames_layer": "3"}, {"head": "finetune"})]


def small_copy(manifest: str, folder: str, size: int = 32) -> str:
    """The photos downsampled to ``size`` px (as small photos come), same ids, labels and splits."""
    from PIL import Image

    rows = list(csv.DictReader(open(manifest)))
    root = os.path.dirname(manifest)
    os.makedirs(folder, exist_ok=True)
    for r in rows:
        out = os.path.join(folder, os.path.basename(r["path"]).rsplit(".", 1)[0] + ".png")
        Image.open(os.path.join(root, r["path"])).convert("RGB").resize((size, size), Image.BICUBIC).save(out)
        r["path"] = os.path.basename(out)
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def main() -> None:
    from pipeline.extract import extract
    from pipeline.heads import train_head

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--epochs", default="300")
    ap.add_argument("--runs", type=int, nargs="*", help="indices into RUNS (default: all; none: --runs alone)")
    ap.add_argument("--sizes", nargs="*", default=["160", "32"], help="photo sizes: 160 (as stored) and/or 32")
    ap.add_argument("--text", type=int, nargs="*", default=[], help="indices into TEXT_RUNS on TREC-6 questions")
    args = ap.parse_args()
    work = scratch_dir("mmfeat-finetune-")
    full = os.path.join(args.data, "imagenette160_subset", "manifest.csv")
    sets = {f"photos, {size} px": full if size == "160" else small_copy(full, os.path.join(work, "small"), int(size))
            for size in args.sizes}
    runs = [(label, manifest, "image", run) for label, manifest in sets.items()
            for run in ([RUNS[i] for i in args.runs] if args.runs is not None else RUNS)]
    runs += [("questions (TREC-6)", os.path.join(args.data, "trec6", "manifest.csv"), "text", TEXT_RUNS[i]) for i in args.text]
    rows = []
    for label, manifest, modality, (name, extract_cfg, head_cfg) in runs:
        start = time.perf_counter()
        s = extract(manifest, modality, "cnn" if modality == "image" else "bert", extract_cfg,
                    dataset=label.split(",")[-1].split("(")[-1].strip(" )").replace(" ", "").lower(),
                    store=os.path.join(work, "store"), progress=False)
        extract_s = time.perf_counter() - start
        start = time.perf_counter()
        card = train_head([s["feature_set"]], {**head_cfg, "max_epochs": args.epochs, "sklearn_baseline": "false"},
                          os.path.join(work, "store"), os.path.join(work, "heads", f"{len(rows)}"))
        m = card["metrics"]
        rows.append((label, name, wilson(m["accuracy"], m["n_test"]), f"{extract_s:.1f}",
                     f"{time.perf_counter() - start:.1f}"))
        print(rows[-1], file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(f"fine-tuning from stored activations and on the images; {platform.machine()}, {os.cpu_count()} cores, no GPU; "
                f"peak RSS {peak:.0f} MiB", "photos", rows)


if __name__ == "__main__":
    main()
