"""The ``train-head`` and ``predict`` flows."""
from __future__ import annotations

import os
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.heads import predict, train_head


@task(name="train-head")
def train_task(feature_sets: list[str], overrides: dict, store: str | None, out: str | None, label: str) -> dict:
    return train_head(feature_sets, overrides, store, out, label)


@flow(name="train-head")
def train_head_flow(feature_sets: list[str] | str, label: str = "label", head: Literal["linear", "mlp"] = "linear",
                    overrides: dict[str, str] | None = None, store: str | None = None, out: str | None = None) -> str:
    """Train a head on feature sets (joined on id); returns the head card path.

    ``feature_sets`` may be one name (what an event trigger passes) or a list of names.
    """
    feature_sets = [feature_sets] if isinstance(feature_sets, str) else feature_sets
    card = train_task(feature_sets, {"head": head, **(overrides or {})}, store, out, label)
    m = card["metrics"]
    get_run_logger().info("head %s: test accuracy %.4f macro-F1 %.4f", card["path"], m["accuracy"], m["macro_f1"])
    create_table_artifact([{"model": "head", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]},
                           {"model": "sklearn LogisticRegression", **{k: m["sklearn_logreg"][k] for k in ("accuracy", "macro_f1")}},
                           {"model": "majority class", "accuracy": m["majority_baseline_accuracy"], "macro_f1": None}],
                          key="train-head-metrics", description="held-out test metrics")
    with open(os.path.join(card["path"], "report.md")) as f:
        report = f.read().replace("](confusion.png)", f"](file://{os.path.join(card['path'], 'confusion.png')})")
    create_markdown_artifact(report.replace("](learning_curve.png)", f"](file://{os.path.join(card['path'], 'learning_curve.png')})"),
                             key="train-head-report", description="head report")
    return os.path.join(card["path"], "head.json")


@task(name="predict")
def predict_task(head_dir: str, feature_sets: list[str], store: str | None) -> dict:
    return predict(head_dir, feature_sets, store)


@flow(name="predict")
def predict_flow(head_dir: str, feature_sets: list[str], store: str | None = None) -> str:
    """Apply a saved head to feature sets; returns the predictions' Parquet path."""
    return predict_task(head_dir, feature_sets, store)["path"]
