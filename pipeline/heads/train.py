"""Train a head on stored features and evaluate it honestly on held-out data."""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch

from ..config import apply_overrides, canonical_json, check_choice, sha256_text
from ..errors import MmfeatError
from ..extractors.runtime import resolve_device
from ..progress import log
from ..store import FeatureStore
from .artifacts import save_head
from .remote import is_remote, publish
from .data import input_column, joined_table, load_head_data
from .metrics import classification_metrics, sklearn_baseline
from .calibration import expected_calibration_error, fit_temperature
from .design import SPARSE_L2_PENALTIES, forward, is_sparse, scaled, standardization, to_device, vstack
from .model import build_head, fit_linear_lbfgs, fit_linear_sweep, fit_one, fit_prototypes


# The comparison fit doubles train time on mid-size sets (55 s vs 17 s measured at ~20k x 1280): by
# default it runs only up to this many training values (rows x features), e.g. 10k x 512.
SKLEARN_AUTO_VALUES = 5_000_000


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Head hyperparameters. ``l2_penalties`` is the regularization sweep, chosen on validation
    (an L2 penalty on the weights, as C in scikit-learn: l2 = 1/(C·n_train)).

    ``solver`` (linear head): ``lbfgs`` solves each penalty exactly on the full training matrix;
    ``adamw`` trains mini-batches with early stopping (all penalties stacked in one model), for
    training sets too large to hold on the device; ``auto`` picks lbfgs up to 4 GiB of features.
    The MLP head always trains with AdamW and early stopping."""

    head: str = "linear"
    solver: str = "auto"
    hidden: tuple[int, ...] | None = None  # mlp: (512,); sequence: (128,) (measured, see heads/sequence.py)
    dropout: float = 0.2
    l2_penalties: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    weight_decay: float = 1e-4
    lr: float = 3e-3
    max_epochs: int = 300
    patience: int = 10
    batch_size: int = 1024
    class_weight: str = "auto"
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    missing: str = "drop"
    group: str | None = None  # a manifest column whose values stay in one split (speaker, patient)
    device: str = "auto"
    refit: bool = True  # linear/prototype: refit on train + validation at the chosen penalty
    sklearn_baseline: bool | None = None  # sklearn's LogisticRegression beside the head; None: up to SKLEARN_AUTO_VALUES
    memory_gb: float = 4.0  # a linear head on one set whose features exceed this is trained streamed (streamed.py)
    tune_blocks: int | None = None  # finetune on a pooled cnn set: the last K EfficientNet-Lite blocks (None: all layers)

    def __post_init__(self):
        check_choice("head", self.head, ("linear", "mlp", "prototype", "finetune", "sequence"))
        check_choice("class_weight", self.class_weight, ("auto", "balanced", "none"))
        check_choice("solver", self.solver, ("auto", "lbfgs", "adamw"))
        check_choice("missing", self.missing, ("drop", "error"))
        if not self.l2_penalties or min(self.l2_penalties) < 0 or self.weight_decay < 0:
            raise ValueError("l2_penalties must be a non-empty list of values >= 0; weight_decay >= 0")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ValueError("val_fraction and test_fraction must be in (0, 0.5)")
        if self.tune_blocks is not None and (self.tune_blocks < 1 or self.head != "finetune"):
            raise ValueError("tune_blocks (>= 1; unset: all layers) is for head=finetune on a pooled cnn set")
        if self.memory_gb <= 0:
            raise ValueError("memory_gb must be > 0")
        if self.lr <= 0 or self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("lr, max_epochs, patience and batch_size must be positive")


def train_head(feature_sets: list[str], overrides: dict | None = None, store: str | None = None,
               out: str | None = None, label: str = "label") -> dict:
    """Train on one or more feature sets (joined on id) for one target; write the head; return its card.

    ``label`` is the ``label`` column or any other column of the dataset's manifest (kept in ``meta``).
    """
    return train_heads(feature_sets, [label], overrides, store, out)[0]


def train_heads(feature_sets: list[str], labels: list[str] | tuple[str, ...] = ("label",),
                overrides: dict | None = None, store: str | None = None, out: str | None = None) -> list[dict]:
    """Multi-target: one head per label column on the same joined features (read once).

    With several labels, ``out`` is a parent directory holding one head directory per label.
    """
    if not labels or len(set(labels)) != len(labels):
        raise MmfeatError(f"labels must be distinct column names, got {list(labels)}")
    cfg = apply_overrides(HeadConfig, overrides)
    st = FeatureStore(store)
    sets = [st.resolve(spec) for spec in feature_sets]
    stream = _streams(sets, cfg)
    joined = joined_table(sets, cfg.missing, with_features=not stream,
                          column=input_column(cfg.head, sets), max_bytes=cfg.memory_gb * 2**30)
    cards = []
    for label in labels:
        name = "-".join(s.name.replace("/", "_") for s in sets) + (f"-{label}" if label != "label" else "") + \
            f"-{cfg.head}-" + sha256_text(canonical_json({"sets": [s.config_id for s in sets], "label": label,
                                                          "cfg": dataclasses.asdict(cfg)}))[:8]
        head_dir = (os.path.join(out, label) if len(labels) > 1 else out) if out else \
            os.path.join(heads_root(st), name)
        head_dir = os.path.abspath(head_dir)  # the card and the predictions name it wherever they are read
        if stream:
            from .streamed import train_streamed

            cards.append(train_streamed(sets[0], joined, label, cfg, head_dir))
        else:
            data = load_head_data(joined, label, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.group)
            if cfg.head == "finetune" and len(sets) == 1 and sets[0].manifest["extractor"] == "cnn" \
                    and sets[0].tensor_shape is None:
                from .network import train_network  # a pooled cnn set: tune the network on its images

                cards.append(train_network(sets[0], data, cfg, head_dir, st))
            elif cfg.head == "finetune":
                from .finetune import train_finetune

                cards.append(train_finetune(sets, data, cfg, head_dir))
            elif cfg.head == "sequence":
                from .sequence import train_sequence

                cards.append(train_sequence(sets, data, cfg, head_dir))
            else:
                cards.append(_train_one(sets, data, cfg, head_dir))
        if is_remote(st):  # trained in a local folder; the store gets the run, then its latest.json
            cards[-1]["store_path"] = publish(st, cards[-1]["path"], os.path.basename(head_dir))
    return cards


def _streams(sets, cfg: HeadConfig) -> bool:
    """Whether to train streamed: one dense set, a linear L-BFGS head, features over ``memory_gb`` (the
    in-memory path holds about four copies of them). Other heads over the budget are loaded whole."""
    from .streamed import feature_bytes

    big = len(sets) == 1 and feature_bytes(sets[0]) * 4 > cfg.memory_gb * (1 << 30)
    if big and (sets[0].sparse or sets[0].tensor_shape or cfg.head != "linear" or cfg.solver == "adamw"):
        log.warning("features exceed memory_gb=%g, but only a linear L-BFGS head on one dense set trains "
                    "streamed: loading them whole", cfg.memory_gb)
        return False
    return big


def _train_one(sets, data, cfg: HeadConfig, head_dir: str) -> dict:
    if not len(data.val.y) or not len(data.test.y):
        raise MmfeatError(f"too few labelled rows to hold out validation and test data: {data.report['sizes']}")
    device = str(resolve_device(cfg.device))
    sparse = is_sparse(data.train.x)
    if sparse and (cfg.head != "linear" or cfg.solver == "adamw"):
        raise MmfeatError(f"sparse features ({', '.join(b['set'] for b in data.report['blocks'] if b['sparse'])}) "
                          f"train the linear head with the lbfgs solver; head={cfg.head} solver={cfg.solver} needs dense features")
    blocks = data.report["blocks"]
    mean, std = standardization(data.train.x, blocks)
    x, xv = to_device(data.train.x, mean, std, device), to_device(data.val.x, mean, std, device, train=False)
    y, yv = torch.from_numpy(data.train.y).to(device), torch.from_numpy(data.val.y).to(device)
    k = len(data.classes)
    start = time.perf_counter()
    solver = cfg.solver if cfg.solver != "auto" else ("lbfgs" if sparse or x.numel() * 4 <= 4 << 30 else "adamw")
    penalties = SPARSE_L2_PENALTIES if sparse and cfg.l2_penalties == HeadConfig.l2_penalties else cfg.l2_penalties
    fits = []
    # auto: both weightings go into the validation sweep. Balanced weights trade accuracy for recall of
    # rare classes: on an imbalanced question set (TREC-6, same test distribution) they cost 10 points.
    weightings = ("balanced", "none") if cfg.class_weight == "auto" else (cfg.class_weight,)
    for weighting in ("none",) if cfg.head == "prototype" else weightings:  # class means take no weights
        weight = class_weights(data.train.y, k, weighting, device)
        if cfg.head == "prototype":
            tagged = [fit_prototypes(x, y, xv, yv, k)]
        elif cfg.head == "linear" and solver == "lbfgs":
            tagged = fit_linear_lbfgs(x, y, xv, yv, k, weight, penalties)
        elif cfg.head == "linear":
            tagged = fit_linear_sweep(x, y, xv, yv, k, weight, penalties, cfg, cfg.seed)
        else:
            tagged = [fit_one(_seeded_head(cfg, x.shape[1], k).to(device), x, y, xv, yv, weight, l2, cfg, cfg.seed)
                      for l2 in cfg.l2_penalties]
        fits += [dataclasses.replace(f, weighting=weighting) for f in tagged]
    best = min(fits, key=lambda f: (-f.val_accuracy, f.val_loss))
    with torch.no_grad():
        temperature = fit_temperature(forward(best.model, xv), yv)
    model, refit = best.model, None
    if cfg.refit and cfg.head != "mlp" and len(data.val.y):
        model, mean, std, refit = _refit_on_train_and_val(data, cfg, best.l2, best.weighting, k, device)
    seconds = time.perf_counter() - start
    model.cpu()
    with torch.no_grad():
        logits = forward(model, to_device(data.test.x, mean, std, "cpu", train=False))
    sklearn = None
    if cfg.sklearn_baseline or (cfg.sklearn_baseline is None and data.train.x.size <= SKLEARN_AUTO_VALUES):
        sklearn = sklearn_baseline(scaled(data.train.x, mean, std), data.train.y, scaled(data.test.x, mean, std),
                                   data.test.y, data.classes, "none" if cfg.class_weight == "auto" else cfg.class_weight)
    return finish_card(sets, data, cfg, solver, penalties, int(x.shape[1]), best, fits, temperature, model, refit,
                       seconds, mean, std, logits, device, head_dir, sklearn)


def finish_card(sets, data, cfg: HeadConfig, solver: str, penalties, dim: int, best, fits, temperature: float,
                model: torch.nn.Module, refit, seconds: float, mean, std, logits: torch.Tensor, device: str,
                head_dir: str, sklearn: dict | None, y_test: np.ndarray | None = None,
                carried: dict[str, str] | None = None) -> dict:
    """Test metrics from the test logits (rows in ``y_test`` order, default ``data.test.y``), the card,
    and the head written to ``head_dir`` (in memory and streamed heads alike)."""
    y_test = data.test.y if y_test is None else y_test
    with torch.no_grad():
        raw, proba = torch.softmax(logits, 1).numpy(), torch.softmax(logits / temperature, 1).numpy()
    metrics = classification_metrics(y_test, proba.argmax(1), data.classes)
    metrics["ece"] = expected_calibration_error(proba, y_test)
    metrics["ece_uncalibrated"] = expected_calibration_error(raw, y_test)
    metrics["majority_baseline_accuracy"] = float(np.mean(y_test == np.bincount(data.train.y).argmax()))
    if sklearn is not None:
        metrics["sklearn_logreg"] = sklearn
    card = {
        "head": cfg.head, "label": data.report["label"], "config": _card_config(cfg, solver), "classes": data.classes,
        "feature_sets": [{"name": s.name, "config_id": s.config_id, "dim": s.dim} for s in sets],
        "dim": dim, "l2_penalties": list(penalties), "standardization": {"mean": mean.tolist(), "std": std.tolist()},
        "selected": {"l2": best.l2, "epoch": best.epochs, "val_accuracy": best.val_accuracy,
                     "val_loss": best.val_loss, "class_weight": best.weighting},
        "sweep": [{"l2": f.l2, "val_accuracy": f.val_accuracy, "val_loss": f.val_loss,
                   "epochs": f.epochs, "class_weight": f.weighting} for f in fits],
        "data": data.report, "metrics": metrics, "train_seconds": round(seconds, 3), "device": device,
        "solver": {"linear": solver, "prototype": "class means"}.get(cfg.head, "adamw"),
        "temperature": temperature, "refit": refit,
    }
    card["path"] = save_head(head_dir, model, card, best.curve, y_test, proba.argmax(1), data.classes, carried)
    card["head_dir"] = head_dir
    return card


def class_weights(y: np.ndarray, k: int, weighting: str, device: str) -> torch.Tensor | None:
    """Per-class loss weights: n / (k · count) when balanced, none otherwise."""
    if weighting != "balanced":
        return None
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return torch.tensor(len(y) / (k * np.maximum(counts, 1)), dtype=torch.float32, device=device)


def _refit_on_train_and_val(data, cfg: HeadConfig, l2: float, weighting: str, k: int, device: str):
    """The chosen setting fitted again on train + validation (as LogisticRegressionCV(refit=True)):
    the validation rows that chose it are not lost to the final model. The penalty keeps scikit-learn's
    C (l2 scales with 1/n); the standardization is recomputed on the larger set."""
    x_all = vstack([data.train.x, data.val.x])
    y_all = np.concatenate([data.train.y, data.val.y])
    mean, std = standardization(x_all, data.report["blocks"])
    x = to_device(x_all, mean, std, device)
    y = torch.from_numpy(y_all).to(device)
    none_x, none_y = x[:0], y[:0]
    if cfg.head == "prototype":
        return fit_prototypes(x, y, none_x, none_y, k).model, mean, std, {"on": "train+val", "rows": len(y_all)}
    weight = class_weights(y_all, k, weighting, device)
    l2_all = l2 * len(data.train.y) / len(y_all)
    fit = fit_linear_lbfgs(x, y, none_x, none_y, k, weight, [l2_all])[0]
    return fit.model, mean, std, {"on": "train+val", "rows": len(y_all), "l2": l2_all}


MLP_HIDDEN = (512,)
_MLP_ONLY = ("hidden", "dropout")
_ADAMW_ONLY = ("weight_decay", "lr", "max_epochs", "patience", "batch_size")


def _card_config(cfg: HeadConfig, solver: str) -> dict:
    """The settings that made this head (a linear L-BFGS head has no epochs, widths or learning rate)."""
    out = dataclasses.asdict(cfg)
    if cfg.head == "mlp" and not cfg.hidden:
        out["hidden"] = list(MLP_HIDDEN)  # what was built
    linear = cfg.head in ("linear", "prototype")
    drop = (_MLP_ONLY if linear else ()) + (_ADAMW_ONLY if linear and (solver == "lbfgs" or cfg.head == "prototype") else ())
    drop += ("l2_penalties", "solver", "class_weight") if cfg.head == "prototype" else ()
    drop += ("l2_penalties", "solver", "hidden", "refit") if cfg.head == "finetune" else ("tune_blocks",)
    drop += ("solver", "refit") if cfg.head == "sequence" else ()
    return {k: v for k, v in out.items() if k not in drop}


def _seeded_head(cfg: HeadConfig, dim: int, k: int) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    return build_head(cfg.head, dim, k, cfg.hidden or MLP_HIDDEN, cfg.dropout)


def heads_root(store: FeatureStore) -> str:
    """``<store>/_heads``; for an object store, ``./mmfeat-heads/_heads``: heads train in local folders and
    each run is then published to ``<store>/_heads`` (``remote.publish``)."""
    base = store.root if "://" not in store.uri else os.path.abspath("mmfeat-heads")
    return os.path.join(base, "_heads")
