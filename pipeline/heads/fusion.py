"""Late fusion of several feature sets for the linear head: one classifier per set (its own penalty chosen on
validation), their logits pooled with non-negative weights fitted on validation (a logarithmic opinion
pool, i.e. stacking of calibrated log-probabilities). The pool of linear classifiers is itself one linear
layer over the sets' concatenated features, so a late-fused head saves, predicts and exports as any linear
head does. Early fusion (one classifier on the concatenation, one penalty) can sit between its parts when
one part is much stronger; with weights that may drop a part, late fusion starts from its best part."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from .calibration import fit_temperature
from .dense import best_of, test_logits
from .design import forward, to_device, vstack
from .solvers import fit_linear_lbfgs, linear_from
from .training import Fit


@dataclasses.dataclass
class LateFit:
    """The pooled linear layer and what chose it: each part's fit and pooling weight."""

    fit: Fit
    parts: list[Fit]
    weights: list[float]  # on each part's calibrated logits
    temperatures: list[float]
    spans: list[tuple[int, int]]


def block_spans(blocks: list[dict]) -> list[tuple[int, int]]:
    """(start, end) columns of each fused set in the concatenated features."""
    spans, start = [], 0
    for block in blocks:
        spans.append((start, start + block["dim"]))
        start += block["dim"]
    return spans


def part_design(x, span: tuple[int, int], mean: np.ndarray, std: np.ndarray, device: str, train: bool = True):
    """One set's columns of the features, standardized as in the fused design."""
    a, b = span
    return to_device(x[:, a:b], mean[a:b], std[a:b], device, train=train)


def pool_weights(val_logits: list[torch.Tensor], yv: torch.Tensor, weight: torch.Tensor | None) -> list[float]:
    """Non-negative weights a_k minimizing the validation loss of sum_k a_k z_k (convex in a: L-BFGS on
    log a, started at a_k = 1/K)."""
    z = torch.stack([v.detach().float() for v in val_logits])  # (K, n, classes)
    log_a = torch.full((len(val_logits),), float(-np.log(len(val_logits))), requires_grad=True)
    loss_fn = nn.CrossEntropyLoss(weight=None if weight is None else weight.cpu())
    opt = torch.optim.LBFGS([log_a], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        loss = loss_fn((log_a.exp()[:, None, None] * z).sum(0), yv.cpu())
        loss.backward()
        return loss

    opt.step(objective)
    a = log_a.detach().exp().numpy()
    return [float(v) if np.isfinite(v) else 0.0 for v in a]


def pooled_linear(parts: list[nn.Linear], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The one linear layer (weight (classes, dim), bias) equal to sum_k a_k part_k(x_k)."""
    w = torch.cat([a * p.weight.detach().cpu() for p, a in zip(parts, weights)], dim=1)
    b = sum(a * p.bias.detach().cpu() for p, a in zip(parts, weights))
    return w, b


def fit_late(data, mean: np.ndarray, std: np.ndarray, penalties, class_weight, device: str) -> LateFit:
    """Each set's classifier on train (penalty chosen on validation), then the pooling weights on validation."""
    spans = block_spans(data.report["blocks"])
    y = torch.from_numpy(data.train.y).to(device)
    yv = torch.from_numpy(data.val.y).to(device)
    k = len(data.classes)
    parts, val_logits = [], []
    for span in spans:
        x, xv = part_design(data.train.x, span, mean, std, device), part_design(data.val.x, span, mean, std, device,
                                                                                 False)
        fits = fit_linear_lbfgs(x, y, xv, yv, k, class_weight, penalties)
        best = best_of(fits)
        parts.append(best)
        with torch.no_grad():
            val_logits.append(forward(best.model, xv).cpu())
    # Each part calibrated first (its own temperature), so that the pooling weights say how much each set is
    # trusted rather than how confident its penalty made it.
    temperatures = [fit_temperature(z, yv) for z in val_logits]
    calibrated = [z / t for z, t in zip(val_logits, temperatures)]
    weights = pool_weights(calibrated, yv, class_weight)
    pooled = sum(a * z for a, z in zip(weights, calibrated))
    w, b = pooled_linear([p.model for p in parts], [a / t for a, t in zip(weights, temperatures)])
    model, _ = linear_from(w.t(), b, torch.zeros(0, w.shape[1]), yv[:0].cpu())
    loss = float(nn.functional.cross_entropy(pooled, yv.cpu(), weight=None if class_weight is None else class_weight.cpu()))
    acc = float((pooled.argmax(1) == yv.cpu()).float().mean())
    fit = Fit(model, None, loss, acc, 0, [])  # no one penalty: each part's is in the report
    return LateFit(fit, parts, weights, temperatures, spans)


def refit_late(late: LateFit, x_all, y_all: torch.Tensor, mean, std, n_train: int, class_weight,
               device: str) -> nn.Linear:
    """Each part fitted again on train + validation at its chosen penalty (scikit-learn's C kept), pooled
    with the weights chosen on validation."""
    models = []
    for part, span in zip(late.parts, late.spans):
        x = part_design(x_all, span, mean, std, device)
        l2 = part.l2 * n_train / len(y_all)
        models.append(fit_linear_lbfgs(x, y_all, x[:0], y_all[:0], part.model.out_features, class_weight, [l2])[0].model)
    w, b = pooled_linear(models, [a / t for a, t in zip(late.weights, late.temperatures)])
    return linear_from(w.t(), b, torch.zeros(0, w.shape[1]), y_all[:0].cpu())[0]


def describe(late: LateFit, blocks: list[dict]) -> dict:
    """The card's account of late fusion: each set's weight, penalty and validation accuracy alone."""
    return {"parts": [{"set": block["set"], "weight": round(a, 4), "temperature": round(t, 4), "l2": part.l2,
                       "val_accuracy": round(part.val_accuracy, 4)}
                      for block, part, a, t in zip(blocks, late.parts, late.weights, late.temperatures)],
            "val_accuracy": round(late.fit.val_accuracy, 4), "val_loss": round(late.fit.val_loss, 4)}


def choose(job, d, early: Fit, early_model: nn.Module, mean: np.ndarray, std: np.ndarray, penalties,
           mode: str, refit: bool) -> tuple[Fit, nn.Module, dict]:
    """Early or late fusion of the job's sets, ``mode`` early, late or auto (the better on validation:
    accuracy, then loss); returns the chosen fit, its final model (refitted on train + validation when
    ``refit``, with the refit's ``mean`` and ``std``) and the card's report of both, test accuracy included."""
    from .training import class_weights

    data = job.data
    late = fit_late(data, d.mean, d.std, penalties, class_weights(data.train.y, d.k, early.weighting, job.device),
                    job.device)
    late_model = late.fit.model
    if refit:
        y_all = np.concatenate([data.train.y, data.val.y])
        late_model = refit_late(late, vstack([data.train.x, data.val.x]), torch.from_numpy(y_all).to(job.device),
                                mean, std, len(data.train.y), class_weights(y_all, d.k, early.weighting, job.device),
                                job.device)
    use_late = mode == "late" or best_of([early, late.fit]) is late.fit

    def test_accuracy(model: nn.Module) -> float:
        return round(float((test_logits(model, job, mean, std).argmax(1).numpy() == data.test.y).mean()), 4)

    report = {"chosen": "late" if use_late else "early", "mode": mode,
              "early": {"val_accuracy": round(early.val_accuracy, 4), "val_loss": round(early.val_loss, 4),
                        "test_accuracy": test_accuracy(early_model)},
              "late": describe(late, data.report["blocks"]) | {"test_accuracy": test_accuracy(late_model)}}
    late.fit.weighting = early.weighting
    return (late.fit, late_model, report) if use_late else (early, early_model, report)
