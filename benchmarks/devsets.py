"""Dev sets where frozen ImageNet features are weak, generated locally from public data (never committed):

- ``digits``: scikit-learn's bundled handwritten digits (``load_digits``: 1,797 8x8 grey images, 10
  classes), written as 32-px PNGs (bicubic); a seeded 70/30 train/test split, stratified by class.
- ``photos32``: the photo subset (../shared/data/imagenette160_subset) downsampled to 32 px, as small
  photos come: same ids, labels and splits.
- ``keywords``: the spoken keywords (../shared/data/arabic_speech_commands10) as 64x64 log-mel
  spectrogram images (librosa: 64 mel bands, 1 s at 16 kHz in 64 frames, 80 dB range): images no
  ImageNet network has seen; the official speaker-disjoint splits, a ``speaker`` column for grouped
  validation.
- ``questions-few``: TREC-6 questions with 16 training examples per class (seeded), the full test split.
"""
from __future__ import annotations

import csv
import os

import numpy as np


def _write_manifest(rows: list[dict], folder: str) -> str:
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def digits(folder: str) -> str:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    split = np.empty(len(d.target), object)
    for c in np.unique(d.target):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        cut = round(0.7 * len(idx))
        split[idx[:cut]], split[idx[cut:]] = "train", "test"
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i, (image, label) in enumerate(zip(d.images, d.target)):
        name = f"digit_{i:04d}.png"
        pixels = (image * (255 / 16)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, "L").resize((32, 32), Image.BICUBIC).convert("RGB").save(os.path.join(folder, name))
        rows.append({"id": f"digit_{i:04d}", "path": name, "label": str(label), "split": split[i]})
    return _write_manifest(rows, folder)


def photos32(data: str, folder: str, size: int = 32) -> str:
    from PIL import Image

    manifest = os.path.join(data, "imagenette160_subset", "manifest.csv")
    rows = list(csv.DictReader(open(manifest)))
    root = os.path.dirname(manifest)
    os.makedirs(folder, exist_ok=True)
    for r in rows:
        out = os.path.join(folder, os.path.basename(r["path"]).rsplit(".", 1)[0] + ".png")
        Image.open(os.path.join(root, r["path"])).convert("RGB").resize((size, size), Image.BICUBIC).save(out)
        r["path"] = os.path.basename(out)
    return _write_manifest(rows, folder)


def keywords(data: str, folder: str) -> str:
    import librosa
    from PIL import Image

    manifest = os.path.join(data, "arabic_speech_commands10", "manifest.csv")
    rows = list(csv.DictReader(open(manifest)))
    root = os.path.dirname(manifest)
    os.makedirs(folder, exist_ok=True)
    for r in rows:
        y, sr = librosa.load(os.path.join(root, r["path"]), sr=16000)
        y = np.pad(y, (0, max(0, sr - len(y))))[:sr]
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=64, n_fft=512, hop_length=sr // 63)[:, :64]
        db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
        pixels = ((db + 80.0) * (255 / 80)).clip(0, 255).astype(np.uint8)[::-1]  # low frequencies at the bottom
        name = r["id"] + ".png"
        Image.fromarray(np.ascontiguousarray(pixels), "L").convert("RGB").save(os.path.join(folder, name))
        r.update(path=name, speaker=os.path.basename(r["path"]).split("_")[0])
    return _write_manifest(rows, folder)


def questions_few(data: str, folder: str, per_class: int = 16) -> str:
    rows = list(csv.DictReader(open(os.path.join(data, "trec6", "manifest.csv"))))
    rng = np.random.default_rng(0)
    train = [r for r in rows if r["split"] == "train"]
    keep = []
    for label in sorted({r["label"] for r in train}):
        of_label = [r for r in train if r["label"] == label]
        keep += [of_label[i] for i in sorted(rng.permutation(len(of_label))[:per_class])]
    os.makedirs(folder, exist_ok=True)
    return _write_manifest(keep + [r for r in rows if r["split"] == "test"], folder)


def make(name: str, data: str, work: str) -> str:
    """The manifest of dev set ``name`` under ``work`` (generated on first use)."""
    folder = os.path.join(work, name)
    if os.path.isfile(os.path.join(folder, "manifest.csv")):
        return os.path.join(folder, "manifest.csv")
    if name == "digits":
        return digits(folder)
    makers = {"photos32": photos32, "keywords": keywords, "questions-few": questions_few}
    if name not in makers:
        raise ValueError(f"unknown dev set {name!r}; valid: digits, {', '.join(makers)}")
    return makers[name](data, folder)
