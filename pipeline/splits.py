"""Splits that stay put: each item (or group) is assigned train, val or test once, and keeps it.

New keys are taken in the order of a hash of the key (never the row order), and each goes to the split
furthest below its target share within its label (stratified), counting what is assigned already; keys
assigned before keep their split whatever else is added or removed. So a nightly run that adds items
never moves yesterday's test items into training, and a class with at least three items has one in each
split. Groups (a speaker, a patient) are assigned as units, stratified by their label counts.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Hashable, Iterable, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
# Ties go to the smaller split, so that small classes fill val and test before train gets a second item.
_TIE_ORDER = {"test": 0, "val": 1, "train": 2}


def shares(val_fraction: float, test_fraction: float) -> dict[str, float]:
    return {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}


def key_order(keys: Iterable[str]) -> list[int]:
    """Indices of ``keys`` sorted by a hash of each key (the order in which new keys are assigned)."""
    digests = [hashlib.blake2b(str(k).encode("utf-8", "surrogatepass"), digest_size=8).digest() for k in keys]
    return sorted(range(len(digests)), key=digests.__getitem__)


def assign(keys: Sequence[str], labels: Sequence[Hashable | dict], fixed: dict[str, str],
           targets: dict[str, float]) -> list[str]:
    """The split of each key: its ``fixed`` one when it has one, else assigned as the module says.
    ``labels``: each key's label, or (groups) a dict label -> item count."""
    counts: dict[Hashable, dict[str, float]] = defaultdict(lambda: dict.fromkeys(targets, 0.0))
    histograms = [lab if isinstance(lab, dict) else {lab: 1} for lab in labels]
    # The unit that must reach every split when it can: a label's items, or all groups together.
    strata = ["groups" if isinstance(lab, dict) else lab for lab in labels]
    units: dict[Hashable, dict[str, int]] = defaultdict(lambda: dict.fromkeys(targets, 0))
    remaining: dict[Hashable, int] = defaultdict(int)
    out: list[str | None] = [None] * len(keys)
    for i, key in enumerate(keys):
        if fixed.get(key) in targets:
            _count(out, i, fixed[key], histograms[i], counts, units[strata[i]])
        else:
            remaining[strata[i]] += 1
    for i in key_order(keys):
        if out[i] is not None:
            continue
        unit = units[strata[i]]
        empty = [s for s in targets if unit[s] == 0]
        can_fill = sum(unit.values()) + remaining[strata[i]] >= len(targets)
        allowed = empty if empty and can_fill and remaining[strata[i]] <= len(empty) else list(targets)
        remaining[strata[i]] -= 1
        _count(out, i, _furthest_below(histograms[i], counts, targets, allowed), histograms[i], counts, unit)
    return out  # type: ignore[return-value]


def _furthest_below(hist: dict, counts, targets: dict[str, float], allowed: list[str]) -> str:
    """The allowed split furthest below its target share, over the key's labels (weighted by count)."""
    totals = {label: sum(counts[label].values()) + n for label, n in hist.items()}
    score = {s: sum(n * (targets[s] * totals[label] - counts[label][s]) for label, n in hist.items()) for s in allowed}
    return max(allowed, key=lambda s: (score[s], -_TIE_ORDER.get(s, 3)))


def _count(out: list, i: int, split: str, hist: dict, counts, unit: dict) -> None:
    out[i] = split
    unit[split] += 1
    for label, n in hist.items():
        counts[label][split] += n


def assign_items(ids: Sequence[str], labels: Sequence[str | None], given: Sequence[str | None],
                 previous: dict[str, str], val_fraction: float = 0.15, test_fraction: float = 0.2) -> np.ndarray:
    """The assigned split of each item whose manifest gives none (null where it gives one): an item keeps
    the split it was assigned before (``previous``: id -> assigned split), new ones are assigned."""
    open_ = [i for i, g in enumerate(given) if g is None]
    chosen = assign([ids[i] for i in open_], [labels[i] for i in open_], previous, shares(val_fraction, test_fraction))
    out = np.full(len(ids), None, dtype=object)
    out[open_] = chosen
    return out
