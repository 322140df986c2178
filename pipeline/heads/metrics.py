"""Held-out metrics and the scikit-learn reference the heads are checked against."""
from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
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
    return {"accuracy": float(accuracy_score(yt, pred)),
            "macro_f1": float(f1_score(yt, pred, labels=list(range(len(classes))), average="macro", zero_division=0)),
            "seconds": round(time.perf_counter() - start, 3)}
