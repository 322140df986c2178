"""Held-out metrics and the scikit-learn reference the heads are checked against."""
from __future__ import annotations

import numpy as np


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound for small n and for accuracies near 0 or 1)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy (with its 95% Wilson interval), macro-F1 over the classes present in the test split
    (a class absent from it has no F1 to average: it is listed instead), per-class figures, confusion."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(int(v) for v in y_true))
    correct = int(np.sum(np.asarray(y_true) == np.asarray(y_pred)))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": list(wilson_interval(correct, len(y_true))),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if present else 0.0,
        "classes_absent_from_test": [classes[i] for i in labels if i not in present],
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_test": int(len(y_true)),
    }


def sklearn_baseline(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, classes: list[str],
                     class_weight: str) -> dict:
    """LogisticRegression (lbfgs, C=1) on the same standardized features and splits."""
    import time

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    start = time.perf_counter()
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced" if class_weight == "balanced" else None)
    clf.fit(x, y)
    pred = clf.predict(xt)
    present = sorted(set(int(v) for v in yt))
    return {"accuracy": float(accuracy_score(yt, pred)),
            "macro_f1": float(f1_score(yt, pred, labels=present, average="macro", zero_division=0)),
            "seconds": round(time.perf_counter() - start, 3)}
