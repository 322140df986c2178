"""Loading a head from disk as untrusted input: the card's schema, shapes checked against the card
before any tensor is allocated, finite statistics and weights; every failure is one line."""
from __future__ import annotations

import json
import math
import os

import torch

from ..errors import MmfeatError
from .model import build_head


def tunes_network(card: dict) -> bool:
    """Whether a finetune head tuned the whole network on images (a Linear on the tuned network's
    features) rather than a top on stored activations."""
    tuned = card.get("data", {}).get("finetune") if isinstance(card.get("data"), dict) else None
    return isinstance(tuned, dict) and tuned.get("mode") == "network"

MAX_PARAMETERS = 1 << 28  # 1 GiB of float32: a card asking for more is refused before allocation


def load_checked(run: str) -> tuple[torch.nn.Module, dict]:
    card = read_card(run)
    dim, k, hidden = card["dim"], len(card["classes"]), tuple(card["config"].get("hidden", ()))
    if card["head"] == "finetune" and not tunes_network(card):  # the pretrained top, from its weights package
        from .finetune import load_top

        model = load_top(card)
    else:
        widths = [dim, *(hidden if card["head"] in ("mlp", "sequence") else ()), k]  # network finetune: a Linear
        params = sum(a * b + b for a, b in zip(widths, widths[1:]))
        if params > MAX_PARAMETERS:
            raise MmfeatError(f"{run}: the card describes {params:,} parameters (> {MAX_PARAMETERS:,}); refusing to load")
        kind = "linear" if card["head"] == "finetune" else card["head"]
        model = build_head(kind, dim, k, hidden, float(card["config"].get("dropout", 0.0)))
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    path = os.path.join(run, "head.safetensors")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            if shapes != expected:
                raise MmfeatError(f"{path}: tensors {shapes} do not match the card's head {expected}")
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise MmfeatError(f"{path}: unreadable weights ({exc})") from None
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise MmfeatError(f"{path}: weights hold NaN or inf")
    model.load_state_dict(state)
    return model.eval(), card


def read_card(run: str) -> dict:
    """A run's head card, its schema checked (no weights loaded)."""
    path = os.path.join(run, "head.json")
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MmfeatError(f"{path}: unreadable head card ({type(exc).__name__})") from None
    problems = []
    if not isinstance(card, dict):
        raise MmfeatError(f"{path}: the head card is not a JSON object")
    if card.get("head") not in ("linear", "mlp", "prototype", "finetune", "sequence"):
        problems.append("head must be linear, mlp, prototype, finetune or sequence")
    tuned = card.get("data", {}).get("finetune") if isinstance(card.get("data"), dict) else None
    network = isinstance(tuned, dict) and tuned.get("mode") == "network"
    if card.get("head") == "finetune" and network and not (isinstance(tuned.get("model"), str)
                                                           and isinstance(tuned.get("weights"), str)):
        problems.append("a network finetune head's card must name its model and tuned weights (data.finetune)")
    elif card.get("head") == "finetune" and not network and not (
            isinstance(tuned, dict) and isinstance(tuned.get("activations"), str)
            and isinstance(tuned.get("model"), str) and isinstance(tuned.get("shape"), list)):
        problems.append("a finetune head's card must name its model, activations and shape (data.finetune)")
    if not (isinstance(card.get("dim"), int) and card["dim"] > 0):
        problems.append("dim must be a positive integer")
    classes = card.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        problems.append("classes must be a list of at least two strings")
    config = card.get("config")
    hidden = config.get("hidden", []) if isinstance(config, dict) else None
    t = card.get("temperature", 1.0)
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        problems.append("temperature must be a positive number")
    if not (isinstance(hidden, list) and all(isinstance(h, int) and h > 0 for h in hidden)):
        problems.append("config.hidden must be a list of positive integers")
    std = card.get("standardization")
    for key in ("mean", "std"):
        values = std.get(key) if isinstance(std, dict) else None
        if card.get("head") == "finetune" and not network:  # activations feed the pretrained layers as they are
            continue
        if not (isinstance(values, list) and len(values) == card.get("dim")
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
            problems.append(f"standardization.{key} must be dim finite numbers")
        elif key == "std" and min(values) <= 0:
            problems.append("standardization.std must be > 0")
    if not isinstance(card.get("feature_sets"), list) or not all(
            isinstance(s, dict) and isinstance(s.get("config_id"), str) for s in card["feature_sets"]):
        problems.append("feature_sets must list the config_ids the head was trained on")
    if problems:
        raise MmfeatError(f"{path}: invalid head card: {'; '.join(problems)}")
    return card
