"""What a nightly rerun costs: a first extract of N texts (word2vec), then a rerun with no change, a
rerun after editing 1% of the labels (no re-extraction), and one after editing 1% of the texts.

    .venv/bin/python benchmarks/nightly.py [N]        (default 100000)

Prints one table (seconds, items extracted, items/s, peak RSS); every row is measured in this run.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORDS = ("market team game film music bank vote law court season player album chart profit shares "
         "election minister goal match studio actor band record growth rates company policy tax").split()


def write_manifest(path: str, n: int, label_edit: int = 0, text_edit: int = 0) -> None:
    """Deterministic texts; items 0, 100, 200, ... get an edited label (label_edit) or text (text_edit)."""
    import numpy as np

    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(WORDS), size=(n, 12))
    with open(path, "w") as f:
        for i in range(n):
            text = " ".join(WORDS[j] for j in picks[i])
            label = f"c{picks[i, 0] % 4}"
            if i % 100 == 0 and label_edit:
                label = "edited"
            if i % 100 == 0 and text_edit:
                text += " edited tonight"
            f.write(json.dumps({"id": f"n{i:07d}", "text": text, "label": label}) + "\n")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    from pipeline.extract import extract

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    work = scratch_dir("mmfeat-nightly-")
    manifest, store = os.path.join(work, "news.jsonl"), os.path.join(work, "store")
    rows = []
    for step, edits in (("first extract", {}), ("rerun, nothing changed", {}),
                        ("rerun, 1% of labels edited", {"label_edit": 1}),
                        ("rerun, 1% of texts edited", {"label_edit": 1, "text_edit": 1})):
        write_manifest(manifest, n, **edits)
        start = time.perf_counter()
        s = extract(manifest, "text", "word2vec", store=store, progress=False)
        seconds = time.perf_counter() - start
        rows.append((step, seconds, s["processed"], s["changes"], s["rows"]))
        print(f"  {step}: {seconds:.2f} s", file=sys.stderr)
    print(f"\nmmfeat nightly rerun, {n:,} texts, word2vec (defaults); {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; peak RSS {peak_rss_mib():.0f} MiB\n")
    print("| step | seconds | items extracted | items/s (whole run) | manifest changes | rows in view |")
    print("|---|---|---|---|---|---|")
    for step, seconds, processed, changes, view in rows:
        shown = ", ".join(f"{k} {v}" for k, v in changes.items() if v) or "none"
        print(f"| {step} | {seconds:.2f} | {processed:,} | {n / seconds:,.0f} | {shown} | {view:,} |")


if __name__ == "__main__":
    main()
