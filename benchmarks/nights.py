"""Ten nights of the nightly loop on a real text set, with what real nights bring: label edits, text edits,
additions, removals, a bad (empty) text, a run killed mid-extract, a damaged part file. Each night: extract,
train a linear head, gc. Measured, per night: what the run published, whether every label edit made so far
reached the night's head (its items.parquet snapshot against the manifest), whether the unchanged items kept
their split, the head's test accuracy, and whether every head run so far, retrained with ``--as-of`` after
the night's gc, reproduces its accuracy; at the end, the final view against a from-scratch extract of the
final manifest (the baseline: same rows, labels and features, and what it costs).

    .venv/bin/python benchmarks/nights.py [--data ../shared/data] [--set trec6] [--extractor bert]

The nights are made from the set's manifest (its split column dropped, so that the store assigns splits):
night 1 holds 60% of the items; each later night adds 150, removes 40, relabels 25 (to another class) and
edits 10 texts (a word appended); night 3 adds an empty text; night 5's first run is killed (SIGKILL) 15 s in
(the moment its first shard commits) and rerun; before night 7 the largest part file is truncated to 1000 bytes.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KILLED_NIGHT, DAMAGED_NIGHT, BAD_NIGHT = 5, 7, 3


class Nights:
    """The manifest as it evolves night by night (id -> text, label), with the edits made so far."""

    def __init__(self, rows: list[dict], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        order = self.rng.permutation(len(rows))
        self.pool = [rows[i] for i in order]
        first = int(0.6 * len(rows))
        self.live = {r["id"]: {"text": r["text"], "label": r["label"]} for r in self.pool[:first]}
        self.next, self.classes = first, sorted({r["label"] for r in rows})
        self.relabelled: set[str] = set()
        self.retexted: set[str] = set()

    def advance(self, night: int) -> None:
        ids = sorted(self.live)
        for i in self.rng.choice(ids, 40, replace=False):
            self.live.pop(i)
            self.relabelled.discard(i)
            self.retexted.discard(i)
        ids = sorted(self.live)
        for i in self.rng.choice(ids, 25, replace=False):
            self.live[i]["label"] = self.rng.choice([c for c in self.classes if c != self.live[i]["label"]])
            self.relabelled.add(i)
        for i in self.rng.choice(ids, 10, replace=False):
            self.live[i]["text"] += f" (night {night})"
            self.retexted.add(i)
        for r in self.pool[self.next:self.next + 150]:
            self.live[r["id"]] = {"text": r["text"], "label": r["label"]}
        self.next += 150
        if night == BAD_NIGHT:
            self.live["empty-night-3"] = {"text": "  ", "label": self.classes[0]}

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, row in sorted(self.live.items()):
                f.write(json.dumps({"id": i, **row}) + "\n")


def killed_run(manifest: str, store: str, extractor: str, set_path: str) -> str:
    """The night's extract in its own process, SIGKILLed the moment its first shard commits (mid-run)."""
    code = ("import sys; from pipeline.extract import extract; "
            "extract(sys.argv[1], 'text', sys.argv[3], store=sys.argv[2], dataset='news', progress=False, "
            "shard_size=32)")
    markers = os.path.join(set_path, "_done")
    before = set(os.listdir(markers))
    proc = subprocess.Popen([sys.executable, "-c", code, manifest, store, extractor], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and set(os.listdir(markers)) <= before:
        time.sleep(0.005)
    if proc.poll() is not None:
        return f"finished before the kill (exit {proc.returncode})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"killed after {len(set(os.listdir(markers)) - before)} of its shards committed"


def damage(store_path: str) -> str:
    import glob

    parts = sorted(glob.glob(os.path.join(store_path, "part-*.parquet")), key=os.path.getsize)
    with open(parts[-1], "r+b") as f:
        f.truncate(1000)
    return os.path.basename(parts[-1])


def reached(card: dict, nights: Nights) -> tuple[int, int]:
    """(edits the head's snapshot agrees with, edits made so far and still live)."""
    snap = {r["id"]: r["label"] for r in pq.read_table(os.path.join(card["path"], "items.parquet")).to_pylist()}
    edits = sorted(nights.relabelled)
    return sum(snap.get(i) == nights.live[i]["label"] for i in edits), len(edits)


def splits_of(card: dict) -> dict[tuple[str, str], str]:
    table = pq.read_table(os.path.join(card["path"], "items.parquet")).to_pylist()
    return {(r["id"], r["content"]): r["split"] for r in table}


def one_night(night: int, nights: Nights, work: str, store: str, extractor: str, fs_path: str | None) -> dict:
    from pipeline.extract import extract

    manifest = os.path.join(work, "news.jsonl")
    if night > 1:
        nights.advance(night)
    nights.write(manifest)
    notes = []
    if night == DAMAGED_NIGHT and fs_path:
        notes.append(f"{damage(fs_path)} truncated")
    before = None
    if night == KILLED_NIGHT:
        from pipeline.store import FeatureStore

        before = FeatureStore(store).dataset("news").current().num_rows
        notes.append(f"first run {killed_run(manifest, store, extractor, fs_path)}")
        after = FeatureStore(store).dataset("news").current().num_rows
        notes.append("view unchanged by it" if after == before else f"VIEW CHANGED {before} -> {after}")
    start = time.perf_counter()
    s = extract(manifest, "text", extractor, dataset="news", store=store, progress=False)
    return {"summary": s, "seconds": time.perf_counter() - start, "notes": notes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--set", default="trec6")
    ap.add_argument("--extractor", default="bert")
    ap.add_argument("--nights", type=int, default=10)
    args = ap.parse_args()
    from pipeline.heads import train_head
    from pipeline.store import FeatureStore
    from pipeline.store.maintenance import gc

    with open(os.path.join(args.data, args.set, "manifest.csv"), newline="", encoding="utf-8") as f:
        rows = [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in csv.DictReader(f)]
    nights, work = Nights(rows), scratch_dir("mmfeat-nights-")
    store = os.path.join(work, "store")
    table, cards, fs_path, previous = [], [], None, None
    for night in range(1, args.nights + 1):
        got = one_night(night, nights, work, store, args.extractor, fs_path)
        s = got["summary"]
        fs_path = s["path"]
        card = train_head([s["feature_set"]], None, store, os.path.join(work, "heads", f"night{night:02d}"))
        cards.append(card)
        ok, edits = reached(card, nights)
        now = splits_of(card)
        kept = [now[k] == previous[k] for k in now if k in previous] if previous else []
        previous = now
        dropped = gc(FeatureStore(store))["rows_dropped"]
        again = [_as_of(c, store, work, f"{night}-{i}") for i, c in enumerate(cards)]  # every run so far, after gc
        same = sum(abs(a - c["metrics"]["accuracy"]) < 1e-9 for a, c in zip(again, cards))
        table.append((night, s, got, ok, edits, kept, card["metrics"]["accuracy"], dropped, f"{same}/{len(cards)}"))
        print(f"  night {night}: {got['seconds']:.1f} s", file=sys.stderr)
    print_table(args, table, baseline(work, store, args.extractor, table[-1][1]))


def _as_of(card: dict, store: str, work: str, tag: str) -> float:
    from pipeline.heads import train_head

    out = os.path.join(work, "asof", tag)
    accuracy = train_head([card["feature_sets"][0]["name"]], None, store, out, as_of=card["path"])["metrics"]["accuracy"]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    from pipeline.store import FeatureStore
    from pipeline.store.maintenance import remove

    remove(FeatureStore(store), f"head:{os.path.basename(out)}")  # its registration: it pins nothing more
    return accuracy


def baseline(work: str, store: str, extractor: str, last: dict) -> dict:
    """A from-scratch extract of the final manifest: the incremental store must hold the same view."""
    from pipeline.extract import extract
    from pipeline.store import FeatureStore

    start = time.perf_counter()
    fresh = extract(os.path.join(work, "news.jsonl"), "text", extractor, dataset="news",
                    store=os.path.join(work, "fresh"), progress=False)
    seconds = time.perf_counter() - start
    a = FeatureStore(store).resolve(last["feature_set"]).table(columns=["id", "label", "features"])
    b = FeatureStore(os.path.join(work, "fresh")).resolve(fresh["feature_set"]).table(columns=["id", "label", "features"])
    a, b = (t.take(pc.sort_indices(t["id"])) for t in (a, b))
    same_ids = a["id"].equals(b["id"]) and a["label"].equals(b["label"])
    gap = float(np.abs(np.stack(a["features"].to_numpy(zero_copy_only=False)) -
                       np.stack(b["features"].to_numpy(zero_copy_only=False))).max()) if same_ids else float("nan")
    return {"seconds": seconds, "same_ids_labels": same_ids, "max_feature_gap": gap, "rows": b.num_rows}


def print_table(args, table, base) -> None:
    print(f"\nmmfeat, {args.nights} nights of {args.set} ({args.extractor}); {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}\n")
    print("| night | what happened | changes published | extracted | rejected | s | label edits in tonight's head "
          "| unchanged items keeping their split | test accuracy | gc rows dropped | head runs so far retrained "
          "--as-of to the same accuracy, after gc |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for night, s, got, ok, edits, kept, acc, dropped, reproduced in table:
        shown = ", ".join(f"{k} {v}" for k, v in s["changes"].items() if v) or "none"
        what = "; ".join(got["notes"] + (["an empty text added"] if night == BAD_NIGHT else [])) or \
            ("first night" if night == 1 else "edits, additions, removals")
        split = f"{sum(kept)}/{len(kept)}" if kept else "-"
        print(f"| {night} | {what} | {shown} | {s['processed']:,} | {s['rejected']} | {got['seconds']:.1f} "
              f"| {ok}/{edits} | {split} | {acc:.4f} | {dropped:,} | {reproduced} |")
    print(f"baseline, a from-scratch extract of the final manifest: {base['rows']:,} rows in {base['seconds']:.1f} s "
          f"(the last incremental night: {table[-1][2]['seconds']:.1f} s); same ids and labels: "
          f"{base['same_ids_labels']}; largest feature difference {base['max_feature_gap']:.2e}")


if __name__ == "__main__":
    main()
