"""Know-your-data on the dev sets with known damage injected: near-copies of test items in train (leakage),
flipped labels, a foreign night (drift); and neighbour search at scale on synthetic vectors.

    .venv/bin/python benchmarks/audit.py [--data ../shared/data] [--only NAME ...] [--scale 100000 1000000]

Damage, made in a scratch folder from the dev sets (nothing is committed):
* 3% of the test items copied into train, as a near-copy: photos resized to 85% and re-encoded as JPEG
  quality 70; texts lightly edited (one edit: two neighbouring words swapped, a word dropped from a text of
  8 words or more, a word's case changed, or a filler word added); clips at 0.8 gain, through Ogg Vorbis.
* 5% of all labels flipped at random to another class.
* a foreign night for drift: photos from scikit-learn's bundled handwritten digits (upsampled), texts from
  the other text set, clips of generated tones and noise bursts; beside it a random half of the same data, where nothing drifted.
Printed beside each figure: an honest baseline (what chance, or a trivial detector, would score).
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import resource
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
logging.getLogger("mmfeat").setLevel(logging.ERROR)
from pipeline.nearcopy import words_close  # noqa: E402

SETS = {"imagenette160_subset": "image", "bbc_news": "text", "trec6": "text", "arabic_speech_commands10": "audio"}
COPY_SHARE, FLIP_SHARE = 0.03, 0.05


def rows_of(data: str, name: str) -> list[dict]:
    with open(os.path.join(data, name, "manifest.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def near_copy_text(text: str, rng) -> str:
    """One light edit: two neighbouring words swapped, a word dropped (texts of 8 words or more), a word's case
    changed, or a filler word added."""
    words = text.split()
    edit = int(rng.integers(4)) if len(words) >= 8 else int(rng.choice([0, 2, 3]))
    i = int(rng.integers(max(len(words) - 1, 1)))
    if edit == 0 and len(words) > 2:
        words[i], words[i + 1] = words[i + 1], words[i]
    elif edit == 1:
        del words[i]
    elif edit == 2:
        words[i] = words[i].upper() if words[i].islower() else words[i].lower()
    else:
        words.insert(i, "really")
    return " ".join(words)


def _copied_texts(manifest: str) -> dict:
    with open(manifest, newline="", encoding="utf-8") as f:
        return {r["id"]: r["text"] for r in csv.DictReader(f) if r["id"].startswith("copy-")}


def near_copy_file(src: str, dst: str, modality: str, rng) -> None:
    if modality == "image":
        from PIL import Image

        with Image.open(src) as img:
            img = img.convert("RGB")
            img = img.resize((int(img.width * 0.85), int(img.height * 0.85)))
            img.save(dst, "JPEG", quality=70)
    else:
        import soundfile as sf

        y, sr = sf.read(src, dtype="float32")
        sf.write(dst, 0.8 * y, sr, format="OGG", subtype="VORBIS")  # quieter, and through a lossy codec


def damaged(data: str, name: str, modality: str, folder: str, seed: int = 0):
    """A manifest of the set with copies of 3% of its test items in train and 5% of its labels flipped;
    returns (manifest, {copy id: original test id}, {flipped ids})."""
    rng = np.random.default_rng(seed)
    rows = rows_of(data, name)
    column = "text" if modality == "text" else "path"
    if column == "path":
        for r in rows:
            r["path"] = os.path.join(data, name, r["path"])
    test = [r for r in rows if r.get("split") == "test"]
    copies = {}
    for k, r in enumerate(rng.permutation(len(test))[:int(COPY_SHARE * len(test))]):
        original = test[r]
        copy = dict(original, id=f"copy-{k}-{original['id']}", split="train")
        if column == "text":
            copy["text"] = near_copy_text(original["text"], rng)
        else:
            copy["path"] = os.path.join(folder, f"copy{k}" + (".jpg" if modality == "image" else ".ogg"))
            near_copy_file(original["path"], copy["path"], modality, rng)
        rows.append(copy)
        copies[copy["id"]] = original["id"]
    classes = sorted({r["label"] for r in rows})
    flipped = set()
    for i in rng.permutation(len(rows))[:int(FLIP_SHARE * len(rows))]:
        rows[i]["label"] = str(rng.choice([c for c in classes if c != rows[i]["label"]]))
        flipped.add(rows[i]["id"])
    path = os.path.join(folder, f"{name}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", column, "label", "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path, copies, flipped


def audit_set(data: str, name: str, modality: str, folder: str, threshold: float) -> dict:
    import pyarrow.parquet as pq

    from pipeline.extract import extract
    from pipeline.insight import audit

    manifest, copies, flipped = damaged(data, name, modality, folder)
    store = os.path.join(folder, "store")
    s = extract(manifest, modality, store=store, dataset=f"{name}-damaged", progress=False, allow_absolute=True)
    start = time.perf_counter()
    result = audit(s["feature_set"], {"near_duplicate": str(threshold)}, store)
    seconds = time.perf_counter() - start
    found = pq.read_table(result["path"]).to_pylist()
    leaks = {(r["id"], r["partner_id"]) for r in found if r["kind"] == "leak"}
    truth = {(test_id, copy_id) for copy_id, test_id in copies.items()}
    texts = {r["id"]: r.get("text") for r in rows_of(data, name)} if modality == "text" else {}
    texts.update({c: near for c, near in _copied_texts(manifest).items()} if texts else {})
    verbatim = {p for p in leaks if texts and texts.get(p[0]) is not None and texts.get(p[0]) == texts.get(p[1])}
    genuine = {p for p in leaks - truth if texts and words_close(texts.get(p[0]), texts.get(p[1]))}
    # per held-out item: an injected original flagged as a leak counts, whichever train copy it names
    hit = len({t for t, _ in truth} & {held for held, _ in leaks})
    flagged_right = {p for p in leaks if p[0] in {t for t, _ in truth}}
    if os.environ.get("AUDIT_DEBUG"):
        for p in sorted(truth - leaks):
            print("missed", repr(texts.get(p[0]))[:160], "||", repr(texts.get(p[1]))[:160])
        for p in sorted(leaks - truth - genuine)[:5]:
            print("extra", repr(texts.get(p[0]))[:160], "||", repr(texts.get(p[1]))[:160])
    labels = [r["id"] for r in sorted((r for r in found if r["kind"] == "label_error"), key=lambda r: -r["score"])]
    top = labels[:len(flipped)]
    return {"set": name, "rows": s["rows"], "seconds": seconds, "threshold": threshold,
            "leak_recall": hit / max(len(truth), 1),
            "leak_precision": len(flagged_right | verbatim) / max(len(leaks), 1),
            "leak_precision_full": len(flagged_right | verbatim | genuine) / max(len(leaks), 1),
            "leaks": len(leaks), "injected": len(truth),
            "label_precision": len(set(top) & flipped) / max(len(top), 1),
            "label_recall": len(set(labels) & flipped) / max(len(flipped), 1), "flagged": len(labels),
            "flipped": len(flipped), "chance": FLIP_SHARE, "store": store, "feature_set": s["feature_set"]}


def drift_rows(data: str, name: str, modality: str, folder: str, result: dict) -> list[dict]:
    """Domain AUC of a foreign night and of a random half of the same data, against a head's training items."""
    from pipeline.extract import extract
    from pipeline.heads import train_head
    from pipeline.insight import drift

    store, fs = result["store"], result["feature_set"]
    head = train_head([fs], None, store, os.path.join(folder, f"{name}-head"))["path"]
    out = []
    for night, manifest in (("same data, random half", _same_half(data, name, modality, folder)),
                            ("foreign night", _foreign(data, name, modality, folder))):
        extract(manifest, modality, store=store, dataset=f"{name}-damaged", progress=False, allow_absolute=True,
                rebind=True, max_reject_fraction=1.0)
        figures = drift(fs, head, "latest", store)
        out.append({"set": name, "night": night, "auc": figures["domain_auc"], "mmd_p": figures["mmd_p"],
                    "label_psi": figures["label_psi"], "drifted": figures["drifted"]})
    return out


def _same_half(data, name, modality, folder) -> str:
    rng = np.random.default_rng(1)
    rows = rows_of(data, name)
    column = "text" if modality == "text" else "path"
    half = [dict(r, id=f"night-{r['id']}", **({"path": os.path.join(data, name, r["path"])} if column == "path" else {}))
            for i, r in enumerate(rows) if rng.random() < 0.5]
    return _write(folder, f"{name}-same.csv", half, column)


def _foreign(data, name, modality, folder) -> str:
    if modality == "text":
        other = "trec6" if name != "trec6" else "bbc_news"
        rows = [dict(r, id=f"foreign-{r['id']}") for r in rows_of(data, other)[:500]]
        return _write(folder, f"{name}-foreign.csv", rows, "text")
    if modality == "image":
        from PIL import Image
        from sklearn.datasets import load_digits

        digits = load_digits()
        rows = []
        for i in range(300):
            path = os.path.join(folder, f"digit{i}.png")
            Image.fromarray((digits.images[i] * 16).astype(np.uint8)).resize((160, 160)).convert("RGB").save(path)
            rows.append({"id": f"foreign-{i}", "path": path, "label": str(digits.target[i]), "split": "test"})
        return _write(folder, f"{name}-foreign.csv", rows, "path")
    import soundfile as sf

    rng = np.random.default_rng(2)
    rows = []
    for i in range(200):  # tones and noise bursts: not speech
        t = np.arange(16000) / 16000
        y = (np.sin(2 * np.pi * rng.uniform(200, 2000) * t) if i % 2 else rng.normal(0, 1, 16000)) * 0.3
        path = os.path.join(folder, f"sound{i}.flac")
        sf.write(path, y.astype(np.float32), 16000)
        rows.append({"id": f"foreign-{i}", "path": path, "label": "yes", "split": "test"})
    return _write(folder, f"{name}-foreign.csv", rows, "path")


def _write(folder, filename, rows, column) -> str:
    path = os.path.join(folder, filename)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", column, "label", "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def scale(n: int, dim: int = 384, queries: int = 1000, seed: int = 0) -> dict:
    """Recall@10 of the set's index against exact search, and queries/s of each, on clustered vectors."""
    from pipeline.store import FeatureStore, import_arrays
    from pipeline.store.neighbors import _LOADED, SetIndex, exact, prepared
    from pipeline.store.items import item_keys

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 1000), dim)).astype(np.float32)
    x = centres[rng.integers(len(centres), size=n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    folder = scratch_dir()
    prov = {"format": 2, "dataset": "scale", "extractor": "synthetic", "extractor_version": "1", "config": {},
            "config_id": "5" * 64, "weights_sha256": None, "dim": dim, "versions": {}, "created": "now"}
    fs = import_arrays(FeatureStore(folder), prov, [f"v{i}" for i in range(n)], x, None)
    view = fs.table(columns=["id", "content"])
    xn = prepared(x, "cosine")
    q = xn[rng.permutation(n)[:queries]]
    start = time.perf_counter()
    truth, _ = exact(xn, q, 10)
    exact_qps = queries / (time.perf_counter() - start)
    index, keys = SetIndex(fs, "cosine"), item_keys(view["id"], view["content"])
    start = time.perf_counter()
    index.search(xn, keys, q[:1], 10)
    build = time.perf_counter() - start
    _LOADED.clear()  # as a new process finds it: the index read from its file
    start = time.perf_counter()
    index.search(xn, keys, q[:1], 10)
    load = time.perf_counter() - start
    start = time.perf_counter()
    found, _ = index.search(xn, keys, q, 10)
    index_qps = queries / (time.perf_counter() - start)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    shutil.rmtree(folder, ignore_errors=True)
    return {"rows": n, "exact_qps": exact_qps, "index_qps": index_qps, "recall@10": recall, "build_s": build,
            "load_s": load}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--only", nargs="*", default=list(SETS))
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--scale", nargs="*", type=int, default=[100_000, 1_000_000])
    args = parser.parse_args()
    args.data = os.path.abspath(args.data)
    from pipeline.insight.audit import AuditConfig

    threshold = args.threshold or AuditConfig().near_duplicate
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; near-copy threshold {threshold}")
    print("| set | rows | leak recall | leak precision: injected + verbatim | + copies in the original (full texts) "
          "| label errors: precision@flipped | recall | chance | audit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    drifts = []
    for name in args.only:
        folder = scratch_dir()
        r = audit_set(args.data, name, SETS[name], folder, threshold)
        print(f"| {name} | {r['rows']} | {r['leak_recall']:.2f} ({r['injected']} injected) | {r['leak_precision']:.2f} "
              f"({r['leaks']} flagged) | {r['leak_precision_full']:.2f} | {r['label_precision']:.2f} | {r['label_recall']:.2f} ({r['flagged']} flagged) "
              f"| {r['chance']:.2f} | {r['seconds']:.1f} |", flush=True)
        drifts += drift_rows(args.data, name, SETS[name], folder, r)
    print("\n| set | night | domain AUC | MMD p | label PSI | drifted |\n|---|---|---|---|---|---|")
    for d in drifts:
        print(f"| {d['set']} | {d['night']} | {d['auc']:.3f} | {d['mmd_p']:.2f} | {d['label_psi']:.3f} | {d['drifted']} |")
    print("\n| rows (384-d) | exact queries/s | index queries/s | recall@10 | index build s | index load s |\n"
          "|---|---|---|---|---|---|")
    for n in args.scale:
        s = scale(n)
        print(f"| {n:,} | {s['exact_qps']:.0f} | {s['index_qps']:.0f} | {s['recall@10']:.3f} | {s['build_s']:.1f} "
              f"| {s['load_s']:.1f} |", flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
