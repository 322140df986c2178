"""The head card (``head.json``): made alike for every kind from what it trained, and read back as untrusted
input: the schema checked, the parameters counted before anything is allocated, shapes checked against the
card, statistics and weights finite. Every failure is one line."""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import torch

from ..errors import MmfeatError
from .calibration import expected_calibration_error
from .registry import HeadKind, TrainedHead, TrainJob, kind_of_card
from .metrics import classification_metrics

MAX_PARAMETERS = 1 << 28  # 1 GiB of float32: a card asking for more is refused before allocation
# What a calibrated head's temperature may be (fit_temperature keeps it there): beyond, probabilities
# underflow to NaN or one class (a tampered card).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-2, 1e2


def make_card(job: TrainJob, trained: TrainedHead, kind: HeadKind) -> dict:
    """Test metrics from the test logits, and the card of the head (every kind alike)."""
    data = trained.data or job.data
    sets = trained.sets or job.sets
    y_test = data.test.y if trained.y_test is None else trained.y_test
    with torch.no_grad():
        logits = trained.test_logits.float()
        raw, proba = torch.softmax(logits, 1).numpy(), torch.softmax(logits / trained.temperature, 1).numpy()
    metrics = classification_metrics(y_test, proba.argmax(1), data.classes)
    metrics["ece"] = expected_calibration_error(proba, y_test)
    metrics["ece_uncalibrated"] = expected_calibration_error(raw, y_test)
    metrics["majority_baseline_accuracy"] = float(np.mean(y_test == np.bincount(data.train.y).argmax()))
    if trained.reference is not None:
        metrics["sklearn_logreg"] = trained.reference
    best = trained.best
    params = trained.params if trained.params is not None else dataclasses.asdict(job.params)
    card = {
        "head": job.name, "kind": kind.name, "label": data.report["label"], "classes": data.classes,
        "config": {**dataclasses.asdict(job.cfg), **params, "head": job.name},
        "feature_sets": [{"name": s.name, "config_id": s.config_id, "dim": s.dim} for s in sets],
        "dim": trained.dim, "l2_penalties": list(trained.penalties),
        "standardization": {"mean": np.asarray(trained.mean).tolist(), "std": np.asarray(trained.std).tolist()},
        "selected": {"l2": best.l2, "epoch": best.epochs, "val_accuracy": best.val_accuracy,
                     "val_loss": best.val_loss, "class_weight": best.weighting},
        "sweep": [{"l2": f.l2, "val_accuracy": f.val_accuracy, "val_loss": f.val_loss,
                   "epochs": f.epochs, "class_weight": f.weighting} for f in trained.fits],
        "data": {**data.report, **trained.report}, "metrics": metrics, "train_seconds": round(trained.seconds, 3),
        "device": job.device, "solver": trained.solver, "temperature": trained.temperature, "refit": trained.refit,
        **trained.card,
    }
    return card


def read_card(run: str) -> dict:
    """A run's head card, its schema checked (no weights loaded)."""
    path = os.path.join(run, "head.json")
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MmfeatError(f"{path}: unreadable head card ({type(exc).__name__})") from None
    if not isinstance(card, dict):
        raise MmfeatError(f"{path}: the head card is not a JSON object")
    try:
        kind = kind_of_card(card)
    except MmfeatError as exc:
        raise MmfeatError(f"{path}: invalid head card: {exc}") from None
    problems = _common_problems(card, kind) + kind.check_card(card)
    if problems:
        raise MmfeatError(f"{path}: invalid head card: {'; '.join(problems)}")
    return card


def _common_problems(card: dict, kind: HeadKind) -> list[str]:
    problems = []
    if card.get("head") not in (kind.name, kind.family):
        problems.append(f"head {card.get('head')!r} is not the kind {kind.name!r} (nor its family)")
    if not (isinstance(card.get("dim"), int) and card["dim"] > 0):
        problems.append("dim must be a positive integer")
    classes = card.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        problems.append("classes must be a list of at least two strings")
    config = card.get("config")
    hidden = config.get("hidden", []) if isinstance(config, dict) else None
    if not (isinstance(hidden, list) and all(isinstance(h, int) and h > 0 for h in hidden)):
        problems.append("config.hidden must be a list of positive integers")
    t = card.get("temperature", 1.0)
    if not (isinstance(t, (int, float)) and math.isfinite(t) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
        problems.append(f"temperature must be a number in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]")
    if kind.standardized:
        problems += _standardization_problems(card.get("standardization"), card.get("dim"))
    if not isinstance(card.get("feature_sets"), list) or not all(
            isinstance(s, dict) and isinstance(s.get("config_id"), str) for s in card["feature_sets"]):
        problems.append("feature_sets must list the config_ids the head was trained on")
    return problems


def _standardization_problems(std, dim) -> list[str]:
    problems = []
    for key in ("mean", "std"):
        values = std.get(key) if isinstance(std, dict) else None
        if not (isinstance(values, list) and len(values) == dim
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
            problems.append(f"standardization.{key} must be dim finite numbers")
        elif key == "std" and min(values) < 5e-7:  # floored at 1e-6 in training; a tampered 1e-45 scales to inf
            problems.append("standardization.std must be >= 1e-6 (the floor training uses)")
        elif key == "mean" and values and max(abs(v) for v in values) > 1e30:
            problems.append("standardization.mean must be finite numbers of sane size")
    return problems


def load_checked(run: str) -> tuple[torch.nn.Module, dict]:
    """The head of a run folder: its card checked, its parameters counted on the meta device before any
    allocation, the weights' shapes checked against the card, every tensor finite."""
    card = read_card(run)
    kind = kind_of_card(card)
    if kind.budgeted():
        with torch.device("meta"):
            params = sum(p.numel() for p in kind.build(card).state_dict().values())
        if params > MAX_PARAMETERS:
            raise MmfeatError(f"{run}: the card describes {params:,} parameters (> {MAX_PARAMETERS:,}); refusing to load")
    model = kind.build(card)
    model.load_state_dict(_checked_state(os.path.join(run, "head.safetensors"), model))
    return model.eval(), card


# Weights a trained head never holds: beyond, logits overflow float32 (a tampered file, ±3e38).
MAX_WEIGHT = 1e6


def _checked_state(path: str, model: torch.nn.Module) -> dict:
    from safetensors import SafetensorError, safe_open

    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        with safe_open(path, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            if shapes != expected:
                raise MmfeatError(f"{path}: tensors {shapes} do not match the card's head {expected}")
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise MmfeatError(f"{path}: unreadable weights ({exc})") from None
    for name, t in state.items():
        if t.is_floating_point() and t.numel() and not (torch.isfinite(t).all() and float(t.abs().max()) <= MAX_WEIGHT):
            raise MmfeatError(f"{path}: weights hold NaN, inf or values beyond ±{MAX_WEIGHT:g} ({name})")
    return state
