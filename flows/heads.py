"""The ``train-head`` and ``predict`` flows."""
from __future__ import annotations

import os
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import artifact_key, library_logs_to_run
from pipeline.heads import head_names, predict, train_heads
from pipeline.heads.report import inline_pictures, markdown

# The head kinds registered when the flows are imported (built-ins and MMFEAT_PLUGINS): Prefect validates
# the parameter against them and the UI offers them.
HeadName = Literal[tuple(head_names())]  # type: ignore[valid-type]


@task(name="train-head")
def train_task(feature_sets: list[str], labels: list[str], overrides: dict, store: str | None, out: str | None) -> list[dict]:
    return train_heads(feature_sets, labels, overrides, store, out)


@flow(name="train-head")
def train_head_flow(feature_sets: list[str] | str, label: str | list[str] = "label",
                    head: HeadName = "linear",
                    overrides: dict[str, str] | None = None, store: str | None = None,
                    out: str | None = None) -> str | list[str]:
    """Train a head on feature sets (joined on id); returns the head card path (one per label).

    ``feature_sets`` may be one name (what an event trigger passes) or a list of names; ``label``
    one column or several (multi-target: one head each, on features read once).
    """
    feature_sets = [feature_sets] if isinstance(feature_sets, str) else feature_sets
    labels = [label] if isinstance(label, str) else label
    with library_logs_to_run():
        cards = train_task(feature_sets, labels, {"head": head, **(overrides or {})}, store, out)
    for card in cards:
        _publish(card)
    paths = [os.path.join(card["path"], "head.json") for card in cards]
    return paths[0] if isinstance(label, str) else paths


def _publish(card: dict) -> None:
    m, label = card["metrics"], card["label"]
    # One artifact key per head (its folder's name, which names its sets, label and settings): the list
    # shows every head's latest report, not only the last head trained.
    suffix = os.path.basename(card["head_dir"])
    get_run_logger().info("head %s (%s): test accuracy %.4f macro-F1 %.4f", card["path"], label,
                          m["accuracy"], m["macro_f1"])
    rows = [{"model": "head", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}]
    if "sklearn_logreg" in m:
        rows.append({"model": "sklearn LogisticRegression", **{k: m["sklearn_logreg"][k] for k in ("accuracy", "macro_f1")}})
    rows.append({"model": "majority class", "accuracy": m["majority_baseline_accuracy"], "macro_f1": None})
    create_table_artifact(rows, key=artifact_key("train-head-metrics", suffix), description=f"held-out test metrics ({label})")
    # The UI cannot reach files beside the head: the pictures travel inside the artifact.
    report = markdown(card, inline_pictures(card["path"]), card["path"])
    create_markdown_artifact(report, key=artifact_key("train-head-report", suffix), description=f"head report ({label})")


@task(name="predict")
def predict_task(head_dir: str, feature_sets: list[str], store: str | None) -> dict:
    return predict(head_dir, feature_sets, store)


@flow(name="predict")
def predict_flow(head_dir: str, feature_sets: list[str], store: str | None = None) -> str:
    """Apply a saved head to feature sets; returns the predictions' Parquet path."""
    return predict_task(head_dir, feature_sets, store)["path"]
