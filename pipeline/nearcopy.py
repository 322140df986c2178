"""When two items are near-copies of each other (one an edited, resized or re-encoded copy of the other).

Images and audio: the cosine similarity of their mean-centred features at or above a threshold (0.9:
resized and re-encoded photos sat at 0.934 or more, the closest pairs of different photos at 0.867 or
less; benchmarks/audit.py). Texts: the features only propose candidates (0.8), the words decide: the two
texts' word multisets may differ by at most one word in ten (at least one), so a copy with two words
swapped, a word dropped or added, or its case or punctuation changed is a near-copy, while "the capital
of France" and "the capital of Spain" are not. Exact copies (the same content) are told by their hash.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .extractors.text.common import tokenize_words
from .store.neighbors import exact

THRESHOLD, TEXT_CANDIDATE = 0.9, 0.8
EXACT_BUDGET = 2e10  # query rows x base rows compared exactly; beyond, callers use the set's index


def centered(x, stats: tuple[np.ndarray, np.ndarray] | None = None):
    """Unit rows of the features standardized per dimension (by the set's own mean and spread, or ``stats``):
    features that all share a large common component (pooled CNN or Word2Vec vectors sit at cosine 0.9 of
    each other), or whose dimensions differ in scale by orders of magnitude (audio descriptors in Hz next to
    ratios), then tell copies from kin. Sparse tf-idf rows are compared as they are."""
    if hasattr(x, "tocsr"):
        return x
    x = np.asarray(x, np.float32)
    mean, std = stats if stats is not None else standardizer(x)
    c = (x - mean) / std
    return (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def standardizer(x) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float32)
    return x.mean(0, keepdims=True), np.maximum(x.std(0, keepdims=True), 1e-6)


def words_close(a: str | None, b: str | None) -> bool:
    """Whether two texts' word multisets differ by at most one word in ten (at least one word)."""
    if a is None or b is None:
        return False
    wa, wb = Counter(tokenize_words(a)), Counter(tokenize_words(b))
    differ = sum(((wa - wb) + (wb - wa)).values())
    return differ <= max(1, round(0.1 * max(sum(wa.values()), sum(wb.values()))))


SHORT = 30  # words: texts this short are also matched by their words alone (templates crowd their neighbours)


def lexical_pairs(texts: list) -> list[tuple[int, int]]:
    """Pairs of short texts with the same words (swapped, recased, repunctuated) or one word apart: found by
    their words alone, since among a short text's nearest features other texts of the same template can
    crowd out its own copy."""
    from collections import defaultdict

    full: dict[tuple, list[int]] = defaultdict(list)
    less: dict[tuple, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        words = sorted(tokenize_words(text)) if text else []
        if not words or len(words) > SHORT:
            continue
        full[tuple(words)].append(i)
        for w in set(words):
            shorter = list(words)
            shorter.remove(w)
            less[tuple(shorter)].append(i)
    pairs = {(a, b) for members in full.values() for a in members for b in members if a < b}
    pairs |= {(min(a, b), max(a, b)) for key, members in full.items() for a in members for b in less.get(key, ()) if a != b}
    return sorted(pairs)


def confirmed(score: float, first: int, second: int, texts: list | None, threshold: float) -> bool:
    """Whether a candidate pair (its centred cosine ``score``) is a near-copy."""
    if texts is None:
        return score >= threshold
    return score >= min(TEXT_CANDIDATE, threshold) and words_close(texts[first], texts[second])


def leaks(train, held, train_texts: list | None, held_texts: list | None, threshold: float = THRESHOLD,
          k: int = 5) -> list[tuple[int, int, float]]:
    """(held row, train row, score) for each held-out row with a near-copy among the train rows (its
    closest one), comparing centred features exactly (the caller keeps within EXACT_BUDGET)."""
    if train.shape[0] == 0 or held.shape[0] == 0:
        return []
    stats = None if hasattr(train, "tocsr") else standardizer(train)
    a, b = centered(train, stats), centered(held, stats)
    found, scores = exact(a, b, min(k, a.shape[0]), "cosine")
    texts = None if train_texts is None else list(held_texts) + list(train_texts)
    out = []
    for r in range(found.shape[0]):
        for c in range(found.shape[1]):
            if confirmed(float(scores[r, c]), r, len(held_texts or []) + int(found[r, c]), texts, threshold):
                out.append((r, int(found[r, c]), float(scores[r, c])))
                break
    return out

