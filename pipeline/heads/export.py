"""``mmfeat export``: what a head tuned of a pretrained network, written for extraction (each kind knows
what that is: cnn weights, a transformers model folder; heads that tuned nothing refuse in one line)."""
from __future__ import annotations

from .artifacts import load_head, resolve_head_dir
from .registry import kind_of_card


def export(head_dir: str, out: str, store=None) -> dict:
    """Write the head's tuned network to ``out``; returns its path, the model, what was tuned and
    ``extract_with``: the ``mmfeat extract`` options that extract with it."""
    run = resolve_head_dir(head_dir, store)
    model, card = load_head(run)
    result = kind_of_card(card).export(run, card, model, out)
    result.setdefault("extract_with", f"--set model={result['model']} --set weights={result['path']}")
    return result
