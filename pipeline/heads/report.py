"""A head's pictures and its Markdown report: the same report as a file beside the head and, with the
pictures inlined as data URIs, as a Prefect artifact (the UI cannot reach files next to the head)."""
from __future__ import annotations

import base64
import os

import numpy as np

MAX_MATRIX_CLASSES = 30  # above this, the report lists the most-confused pairs instead of a picture
PICTURES = ("confusion.png", "validation.png")


def plots(folder: str, card: dict, curve) -> None:
    """``confusion.png`` (test split) and ``validation.png``: validation accuracy and loss against the
    L2 penalty, the chosen one marked (with the MLP's learning curve beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, cm = card["classes"], np.asarray(card["metrics"]["confusion_matrix"])
    k = min(len(classes), MAX_MATRIX_CLASSES)
    if len(classes) > MAX_MATRIX_CLASSES:  # the most frequent classes only: a 100-class matrix is unreadable
        keep = np.argsort(-cm.sum(1))[:k]
        cm, classes = cm[np.ix_(keep, keep)], [classes[i] for i in keep]
    fig, ax = plt.subplots(figsize=(3 + 0.32 * k, 2.6 + 0.32 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 15:
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > cm.max() / 2 else "black")
    ax.set_title("Confusion matrix (test split)" + (f", {k} largest classes" if k < len(card["classes"]) else ""))
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "confusion.png"), dpi=80)
    plt.close(fig)
    _validation_plot(folder, card, curve, plt)


def _validation_plot(folder: str, card: dict, curve, plt) -> None:
    """The penalty sweep on validation (the chosen penalty marked), the learning curve beside it for
    epoch-trained heads; a learning curve alone for heads without a sweep; a note for class means."""
    sweep, chosen = card["sweep"], card["selected"]["l2"]
    has_sweep = len({s["l2"] for s in sweep}) > 1 or bool(card.get("l2_penalties"))
    has_curve = bool(curve) and card.get("solver") not in ("lbfgs", "lbfgs (streamed)", "class means")
    if card.get("solver") == "class means":
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.text(0.5, 0.5, f"class means: no penalty to choose\nvalidation accuracy {sweep[0]['val_accuracy']:.3f}",
                ha="center", va="center")
        ax.set_axis_off()
    elif not has_sweep:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        _learning_curve(ax, curve, card, "Fine-tuning (validation keeps the best epoch)")
    else:
        fig, axes = plt.subplots(1, 2 if has_curve else 1, figsize=(9 if has_curve else 5, 3.4), squeeze=False)
        ax = axes[0, 0]
        for weighting in sorted({s.get("class_weight", "none") for s in sweep}):
            part = sorted((s for s in sweep if s.get("class_weight", "none") == weighting), key=lambda s: s["l2"])
            ax.semilogx([s["l2"] for s in part], [s["val_accuracy"] for s in part], "o-",
                        label=f"validation accuracy ({weighting} class weights)")
        if chosen is not None:  # late fusion: a penalty per set (the fusion table)
            ax.axvline(chosen, color="gray", linestyle="--", label=f"chosen l2={chosen:g}")
        ax.set_xlabel("L2 penalty")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
        ax.set_title("Penalty sweep (validation)")
        if has_curve:
            _learning_curve(axes[0, 1], curve, card, "Learning curve" + (f" (l2={chosen:g})" if chosen is not None else ""))
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "validation.png"), dpi=80)
    plt.close(fig)


def _learning_curve(ax, curve, card: dict, title: str) -> None:
    ax.plot([c[0] for c in curve], [c[1] for c in curve], label="train loss")
    ax.plot([c[0] for c in curve], [c[2] for c in curve], label="validation loss")
    ax.axvline(card["selected"]["epoch"], color="gray", linestyle="--", label="kept epoch")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
    ax.set_title(title)


def edge_warning(card: dict) -> str | None:
    """A penalty chosen at the end of the grid may be short of the best one: say which way to extend."""
    grid = sorted({s["l2"] for s in card["sweep"]})
    chosen = card["selected"]["l2"]
    if chosen is None or card.get("solver") == "class means" or len(grid) < 2 or grid[0] < chosen < grid[-1]:
        return None
    side = "smallest" if chosen == grid[0] else "largest"
    hint = f"{chosen / 10:g}" if side == "smallest" else f"{chosen * 10:g}"
    return (f"the chosen penalty is the {side} of the grid: the best may lie beyond it; try adding {hint} "
            "(--set l2_penalties=...)")


def confused_pairs(card: dict, top: int = 10) -> list[tuple[str, str, int]]:
    cm = np.asarray(card["metrics"]["confusion_matrix"])
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None)[:top]
    return [(card["classes"][i], card["classes"][j], int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape))
            if off[i, j] > 0]


def markdown(card: dict, pictures: dict[str, str], head_path: str | None = None) -> str:
    """The report; ``pictures`` maps each picture to its source (a file name, or a data URI)."""
    from .registry import kind_of_card

    m = card["metrics"]
    lines = [f"# {card['head']} head for {card.get('label', 'label')!r} on "
             f"{', '.join(s['name'] for s in card['feature_sets'])}", "",
             f"Held-out test split: {m['n_test']} items. {kind_of_card(card).training_sentence(card)}", ""]
    warning = edge_warning(card)
    if warning:
        lines += [f"> **Note:** {warning}", ""]
    lines += _metrics_table(card) + _data_table(card.get("data", {})) + _fusion_table(card.get("data", {}))
    lines += ["| L2 penalty | class weights | validation accuracy | validation loss |", "|---|---|---|---|"]
    chosen = (card["selected"]["l2"], card["selected"].get("class_weight"))
    for s in card["sweep"]:
        mark = " **(chosen)**" if (s["l2"], s.get("class_weight")) == chosen else ""
        lines.append(f"| {s['l2']:g}{mark} | {s.get('class_weight', '')} | {s['val_accuracy']:.4f} | {s['val_loss']:.4f} |")
    lines += ["", f"![validation]({pictures['validation.png']})", ""]
    if len(card["classes"]) > MAX_MATRIX_CLASSES:
        lines += ["| most confused: true | predicted | count |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {n} |" for a, b, n in confused_pairs(card)]
        lines.append("")
    lines += [f"![confusion matrix]({pictures['confusion.png']})", "",
              "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, v in list(m["per_class"].items())[:200]:
        lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    if head_path:
        lines += ["", f"Head folder: [{head_path}](file://{head_path})"]
    return "\n".join(lines) + "\n"


def _metrics_table(card: dict) -> list[str]:
    m = card["metrics"]
    sk = m.get("sklearn_logreg")
    lo, hi = m.get("accuracy_ci95", [float("nan")] * 2)
    lines = ["| model | accuracy (95% CI) | macro-F1 |", "|---|---|---|",
             f"| this head | {m['accuracy']:.4f} ({lo:.3f}–{hi:.3f}) | {m['macro_f1']:.4f} |",
             *([f"| scikit-learn LogisticRegression (C=1) | {sk['accuracy']:.4f} | {sk['macro_f1']:.4f} |"] if sk else []),
             f"| majority class | {m['majority_baseline_accuracy']:.4f} | |", ""]
    if "ece" in m:
        applied = card.get("temperature", 1.0) != 1.0
        lines += [f"Calibration: temperature {card.get('temperature', 1.0):.3g} "
                  f"{'fitted on validation' if applied else '(none: a fitted one did not calibrate validation better)'}"
                  f"; expected calibration error on test {m['ece']:.3f} (without it {m['ece_uncalibrated']:.3f})."
                  + (f" Refit on train + validation ({card['refit']['rows']} rows) at the chosen setting."
                     if card.get("refit") else ""), ""]
    if m.get("classes_absent_from_test"):
        lines += [f"Classes absent from the test split (left out of macro-F1): {', '.join(m['classes_absent_from_test'])}", ""]
    return lines


def _fusion_table(data: dict) -> list[str]:
    """Early and late fusion side by side (validation chose one; both are measured on test)."""
    fusion = data.get("fusion")
    if not fusion:
        return []
    weights = ", ".join(f"{p['set']} {p['weight']:.2f}" for p in fusion["late"]["parts"])
    rows = [("early", "one classifier on the joined features", fusion["early"]),
            ("late", f"one classifier per set, logits pooled (weights {weights})", fusion["late"])]
    return ["| fusion | validation accuracy | test accuracy |", "|---|---|---|",
            *[f"| {name}: {what}{' **(chosen)**' * (fusion['chosen'] == name)} | {r['val_accuracy']:.4f} | "
              f"{r['test_accuracy']:.4f} |" for name, what, r in rows], ""]


def _data_table(data: dict) -> list[str]:
    sizes = data.get("sizes", {})
    return ["| data | |", "|---|---|",
            f"| rows joined | {data.get('joined', '')} |",
            f"| train / validation / test | {sizes.get('train', '')} / {sizes.get('val', '')} / {sizes.get('test', '')} |",
            f"| split from | {data.get('split_source', '')} |",
            f"| unlabelled rows left out | {data.get('unlabelled_dropped', 0)} |",
            *([f"| grouped by | {data['grouped_by']} |"] if data.get("grouped_by") else []),
            *([f"| validation / test items with a near-copy in train | {data['leakage'].get('val', 0)} / "
               f"{data['leakage'].get('test', 0)}"
               + (" (they inflate the accuracy: mmfeat audit lists them; --set copies_in_one_split=true keeps "
                  "copies together)" if data['leakage'].get('test') else "") + " |"]
              if (data.get("leakage") or {}).get("counted") else []),
            *([f"| classes under 5 examples | {', '.join(f'{c} ({n})' for c, n in data['small_classes'].items())} |"]
              if data.get("small_classes") else []), ""]


def inline_pictures(folder: str) -> dict[str, str]:
    """Data URIs of the run's pictures (what a Prefect markdown artifact can display)."""
    out = {}
    for name in PICTURES:
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    return out
