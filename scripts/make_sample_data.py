"""Generate sample_data/: small labelled images, texts and audio clips, with deliberately bad inputs.

Run from the repo root: python scripts/make_sample_data.py. Deterministic (fixed seeds).
Each modality has a manifest with a train/val/test split; bad inputs exercise the rejects table.
"""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sample_data")
RNG = np.random.default_rng(7)


def split_of(k: int) -> str:
    return ("train", "train", "train", "val", "test")[k % 5] if k % 10 != 9 else "test"


def images() -> list[dict]:
    rows, root = [], os.path.join(OUT, "images")
    classes = {"circles": "ellipse", "squares": "rectangle", "stripes": "stripes"}
    for label, shape in classes.items():
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for k in range(15):
            w, h = int(RNG.integers(48, 160)), int(RNG.integers(48, 160))
            bg = tuple(int(c) for c in RNG.integers(0, 256, 3))
            fg = tuple(int(c) for c in RNG.integers(0, 256, 3))
            img = Image.new("RGB", (w, h), bg)
            d = ImageDraw.Draw(img)
            if shape == "stripes":
                step = int(RNG.integers(6, 14))
                for x in range(0, w + h, step * 2):
                    d.line([(x, 0), (x - h, h)], fill=fg, width=step)
            else:
                s = int(min(w, h) * RNG.uniform(0.4, 0.8))
                x0, y0 = int(RNG.integers(0, w - s + 1)), int(RNG.integers(0, h - s + 1))
                getattr(d, shape)([x0, y0, x0 + s, y0 + s], fill=fg)
            arr = np.asarray(img).astype(np.int16) + RNG.integers(-12, 13, (h, w, 3))
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            kind = k % 3
            if kind == 0:
                name = f"{label}_{k:02d}.jpg"
                img.save(os.path.join(root, label, name), quality=85)
            elif kind == 1:
                name = f"{label}_{k:02d}.png"
                rgba = img.convert("RGBA")
                rgba.putalpha(Image.new("L", img.size, 255).point(lambda v: v - int(RNG.integers(0, 60))))
                rgba.save(os.path.join(root, label, name))
            else:
                name = f"{label}_{k:02d}_gray.jpg"
                img.convert("L").save(os.path.join(root, label, name), quality=85)
            rows.append({"id": f"{label}/{name}", "path": f"{label}/{name}", "label": label, "split": split_of(k),
                         "colour": "gray" if kind == 2 else "colour"})  # a second target, for multi-target heads
    bad = os.path.join(root, "bad")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(root, rows[0]["path"]), "rb") as f:
        data = f.read()
    with open(os.path.join(bad, "truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    open(os.path.join(bad, "empty.jpg"), "wb").close()
    with open(os.path.join(bad, "not_an_image.png"), "w") as f:
        f.write("this is text, not a PNG\n")
    for name, label in (("truncated.jpg", "circles"), ("empty.jpg", "squares"), ("not_an_image.png", "stripes")):
        rows.append({"id": f"bad/{name}", "path": f"bad/{name}", "label": label, "split": "train"})
    return rows


TOPICS = {
    "sports": ("team coach season match goal player league score win championship stadium fans striker "
               "defender tournament final referee injury transfer victory"),
    "technology": ("software chip startup cloud data network device users app security processor update "
                   "engineers platform launch battery smartphone algorithm servers code"),
    "cooking": ("recipe oven flour butter garlic sauce simmer chef kitchen taste bake onions pan dough "
                "spices roast flavor salt dinner vegetables"),
}
FILLER = "the a of and to in on with for this that new after its their was is".split()


def texts() -> list[dict]:
    rows = []
    for label, vocab in TOPICS.items():
        words = vocab.split()
        for k in range(20):
            n = int(RNG.integers(12, 40))
            toks = [str(RNG.choice(words)) if RNG.random() < 0.55 else str(RNG.choice(FILLER)) for _ in range(n)]
            text = " ".join(toks).capitalize() + "."
            rows.append({"id": f"{label}-{k:02d}", "text": text, "label": label, "split": split_of(k)})
    rows.append({"id": "bad-empty", "text": "", "label": "sports", "split": "train"})
    rows.append({"id": "bad-blank", "text": "   \n\t ", "label": "cooking", "split": "train"})
    return rows


def audio() -> list[dict]:
    rows, root = [], os.path.join(OUT, "audio")
    os.makedirs(root, exist_ok=True)
    rates = (8000, 16000, 22050, 44100)
    for label in ("tone", "noise", "chirp"):
        for k in range(12):
            sr = rates[k % 4]
            dur = float(RNG.uniform(0.25, 0.9))
            t = np.arange(int(sr * dur)) / sr
            if label == "tone":
                f0 = RNG.uniform(150, 900)
                y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
            elif label == "noise":
                y = RNG.standard_normal(len(t)) * np.exp(-t * RNG.uniform(0.5, 4))
            else:
                f0, f1 = RNG.uniform(100, 400), RNG.uniform(1000, 3500)
                y = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * dur)))
            y = 0.3 * y / np.max(np.abs(y)) + RNG.normal(0, 0.003, len(t))
            if k % 3 == 2:
                y = np.stack([y, 0.8 * y], axis=1)  # stereo
            ext = "flac" if k % 2 else "wav"
            name = f"{label}_{k:02d}.{ext}"
            sf.write(os.path.join(root, name), y.astype(np.float32), sr, subtype="PCM_16")
            rows.append({"id": name, "path": name, "label": label, "split": split_of(k)})
    y = RNG.normal(0, 0.1, 8000).astype(np.float32)
    y[100:200] = np.nan
    sf.write(os.path.join(root, "bad_nan.wav"), y, 16000, subtype="FLOAT")
    open(os.path.join(root, "bad_empty.wav"), "wb").close()
    rows += [{"id": "bad_nan.wav", "path": "bad_nan.wav", "label": "noise", "split": "train"},
             {"id": "bad_empty.wav", "path": "bad_empty.wav", "label": "tone", "split": "train"}]
    return rows


def write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    write_csv(os.path.join(OUT, "images", "manifest.csv"), images())
    rows = texts()
    with open(os.path.join(OUT, "texts.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    # The same texts as an ordinary CSV: other column names, no id column (README: your own data)
    write_csv(os.path.join(OUT, "reviews.csv"), [{"content": r["text"], "category": r["label"]} for r in rows])
    write_csv(os.path.join(OUT, "audio", "manifest.csv"), audio())


if __name__ == "__main__":
    main()
