"""Head artifacts: safetensors weights, a JSON head card, plots and a Markdown report."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from ..errors import MmfeatError
from .model import build_head


def save_head(head_dir: str, model: torch.nn.Module, card: dict, curve, y_true, y_pred, classes) -> str:
    """Write a training run to ``<head_dir>/runs/<time>-<id>/`` through a staging folder renamed into
    place (a kill leaves no half-written head), then point ``<head_dir>/latest`` at it. Returns the run."""
    import shutil
    import uuid
    from datetime import datetime, timezone

    from safetensors.torch import save_file

    runs = os.path.join(head_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    staging = os.path.join(head_dir, f".staging-{uuid.uuid4().hex}")
    os.makedirs(staging)
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(staging, "head.safetensors"))
        card["versions"] = _versions()
        with open(os.path.join(staging, "head.json"), "w") as f:
            json.dump(card, f, indent=1)
        _plots(staging, curve, card["metrics"]["confusion_matrix"], classes,
               "L-BFGS objective evaluation" if card.get("solver") == "lbfgs" else "epoch")
        with open(os.path.join(staging, "report.md"), "w") as f:
            f.write(report_markdown(card))
        mode = 0o666 & ~_umask()
        for name in os.listdir(staging):  # safetensors writes 0600; the rest of a head is readable alike
            os.chmod(os.path.join(staging, name), mode)
            _fsync(os.path.join(staging, name))
        run = os.path.join(runs, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}")
        os.rename(staging, run)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    link = os.path.join(head_dir, f".latest-{uuid.uuid4().hex}")
    os.symlink(os.path.relpath(run, head_dir), link)
    os.replace(link, os.path.join(head_dir, "latest"))
    _fsync(head_dir)
    return run


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve_head_dir(path: str) -> str:
    """A run folder (holding head.json) as given, or a head folder's ``latest`` run."""
    if os.path.isfile(os.path.join(path, "head.json")):
        return path
    latest = os.path.join(path, "latest")
    if os.path.isfile(os.path.join(latest, "head.json")):
        return os.path.realpath(latest)
    raise MmfeatError(f"{path}: not a head (no head.json, no latest run)")


def _versions() -> dict:
    from ..store.schema import library_versions

    return library_versions()


def _plots(head_dir: str, curve, confusion, classes, step_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(classes), 3.5 + 0.4 * len(classes)))
    cm = np.asarray(confusion)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(os.path.join(head_dir, "confusion.png"), dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [c[0] for c in curve]
    ax.plot(epochs, [c[1] for c in curve], label="train loss")
    ax.plot(epochs, [c[2] for c in curve], label="validation loss")
    ax.set_xlabel(step_name)
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.set_title("Learning curve (selected L2 penalty)")
    fig.tight_layout()
    fig.savefig(os.path.join(head_dir, "learning_curve.png"), dpi=100)
    plt.close(fig)


def report_markdown(card: dict) -> str:
    m = card["metrics"]
    sk = m.get("sklearn_logreg")
    lines = [f"# Head report: {card['head']} head for {card.get('label', 'label')!r} on "
             f"{', '.join(s['name'] for s in card['feature_sets'])}", "",
             f"Test split: {m['n_test']} items. Metrics are on held-out test data only; the L2 penalty "
             f"({card['selected']['l2']}) was chosen on validation"
             + (f", and the epoch ({card['selected']['epoch']}) by early stopping on it." if card.get("solver") != "lbfgs"
                else f" (solver L-BFGS, exact fit, {card['selected']['epoch']} objective evaluations)."), "",
             "| model | accuracy | macro-F1 |", "|---|---|---|",
             f"| this head | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |",
             *([f"| scikit-learn LogisticRegression (C=1) | {sk['accuracy']:.4f} | {sk['macro_f1']:.4f} |"] if sk else []),
             f"| majority class | {m['majority_baseline_accuracy']:.4f} | |", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, v in m["per_class"].items():
        lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    lines += ["", "![confusion matrix](confusion.png)", "", "![learning curve](learning_curve.png)", "",
              f"Data: {json.dumps(card['data'])}", ""]
    return "\n".join(lines)


def load_head(head_dir: str) -> tuple[torch.nn.Module, dict]:
    """The head (a run folder, or a head folder's latest run), validated before anything is allocated."""
    from .validate import load_checked

    return load_checked(resolve_head_dir(head_dir))
