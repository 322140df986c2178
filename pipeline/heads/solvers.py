"""Fitting classifiers on feature matrices: exact L-BFGS logistic regression along a penalty path, the
whole penalty sweep as one stacked AdamW model, one AdamW model per penalty (MLP, sequence), class means."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .design import forward, to_device
from .training import EarlyStopping, Fit, decay_on_plateau, keep_state, minibatches, train_epochs


def fit_one(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
            class_weight: torch.Tensor | None, l2: float, params, seed: int) -> Fit:
    """Mini-batch AdamW on cross-entropy + (l2/2)·||W||² (weights, not biases: sklearn's objective
    with C = 1/(l2·n)); the learning rate decays on validation plateaus; keeps the weights of the
    epoch with the lowest validation loss and stops after ``patience`` epochs without one."""
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    loss_fn = nn.CrossEntropyLoss(weight=class_weight)

    def run_epoch(_: int) -> float:
        model.train()
        total = 0.0
        for idx in minibatches(len(y), params.batch_size, gen, x.device):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            (loss + 0.5 * l2 * sum(w.square().sum() for w in weights)).backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        return total / len(y)

    keep, restore = keep_state(model)
    stopping = EarlyStopping(params.patience, keep)
    rows = train_epochs(params.max_epochs, run_epoch, lambda: [evaluate_loss(model, xv, yv, loss_fn)], stopping,
                        lambda e, t, v: f"l2={l2:g}: train loss {t:.4f}, validation loss {v[0]:.4f}",
                        decay_on_plateau(opt))
    restore()
    model.eval()
    with torch.no_grad():
        acc = float((model(xv).argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return Fit(model, l2, stopping.losses[0], acc, stopping.epochs[0], [(e, t, v[0]) for e, t, v in rows])


def fit_linear_sweep(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, k: int,
                     class_weight: torch.Tensor | None, l2s: Sequence[float], params, seed: int) -> list[Fit]:
    """The whole L2 sweep of linear heads trained at once, as one stacked (P, dim, k) weight.

    Same objective, optimizer and early stopping per penalty as :func:`fit_one`, but one matmul
    and one optimizer step per mini-batch serve every penalty: the sweep costs about one fit.
    """
    dim, p = x.shape[1], len(l2s)
    torch.manual_seed(seed)
    init = nn.Linear(dim, k)  # the same initialization fit_one's model gets under this seed
    w = nn.Parameter(init.weight.detach().t().expand(p, dim, k).clone().to(x.device))
    b = nn.Parameter(init.bias.detach().expand(p, k).clone().to(x.device))
    l2 = torch.tensor(tuple(l2s), dtype=torch.float32, device=x.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW([w, b], lr=params.lr, weight_decay=params.weight_decay)
    cw = class_weight if class_weight is not None else torch.ones(k, device=x.device)

    def losses(xb, yb):  # (P,) weighted-mean cross-entropy per penalty, as nn.CrossEntropyLoss(weight)
        logits = torch.baddbmm(b.unsqueeze(1), xb.expand(p, *xb.shape), w)
        nll = nn.functional.cross_entropy(logits.reshape(-1, k), yb.repeat(p), reduction="none").view(p, -1)
        return (nll * cw[yb]).sum(1) / cw[yb].sum()

    def run_epoch(_: int) -> list[float]:
        total = torch.zeros(p, device=x.device)
        for idx in minibatches(len(y), params.batch_size, gen, x.device):
            opt.zero_grad(set_to_none=True)
            loss = losses(x[idx], y[idx])
            (loss.sum() + 0.5 * (l2 * w.square().sum((1, 2))).sum()).backward()
            opt.step()
            total += loss.detach() * len(idx)
        return (total / len(y)).cpu().tolist()

    def validate() -> list[float]:
        with torch.no_grad():
            return losses(xv, yv).cpu().tolist() if len(yv) else [float("inf")] * p

    best_w, best_b = w.detach().clone(), b.detach().clone()

    def keep(i: int) -> None:
        best_w[i], best_b[i] = w.detach()[i], b.detach()[i]

    stopping = EarlyStopping(params.patience, keep, [float("inf")] * p)
    rows = train_epochs(params.max_epochs, run_epoch, validate, stopping,
                        lambda e, t, v: f"{p} penalties: validation loss {min(v):.4f} (best of the sweep)",
                        decay_on_plateau(opt))
    fits = []
    for i, penalty in enumerate(l2s):
        model, acc = linear_from(best_w[i], best_b[i], xv, yv)
        curve = [(e, t[i], v[i]) for e, t, v in rows][:stopping.epochs[i] + params.patience]
        fits.append(Fit(model, penalty, stopping.losses[i], acc, stopping.epochs[i], curve))
    return fits


def fit_linear_lbfgs(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, k: int,
                     class_weight: torch.Tensor | None, l2s: Sequence[float], max_iter: int = 500) -> list[Fit]:
    """Exact multinomial logistic regression for each L2 penalty: full-batch L-BFGS on the same
    objective as scikit-learn's lbfgs (C = 1/(l2·n)), strongest penalty first, each fit warm-started
    from the previous one (a regularization path). The curve is per objective evaluation."""
    w = torch.zeros(x.shape[1], k, device=x.device, requires_grad=True)
    b = torch.zeros(k, device=x.device, requires_grad=True)
    loss_fn = nn.CrossEntropyLoss(weight=class_weight)
    fits = {}
    for l2 in sorted(set(l2s), reverse=True):
        opt = lbfgs([w, b], max_iter)
        curve: list[tuple[int, float, float]] = []

        def objective():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(x @ w + b, y)
            total = loss + 0.5 * l2 * w.square().sum()
            total.backward()
            with torch.no_grad():
                curve.append((len(curve) + 1, float(loss), float(loss_fn(xv @ w + b, yv)) if len(yv) else float("nan")))
            return total.detach()

        opt.step(objective)
        model, acc = linear_from(w.detach(), b.detach(), xv, yv)
        fits[l2] = Fit(model, l2, evaluate_loss(model, xv, yv, loss_fn), acc, len(curve), curve)
    return [fits[l2] for l2 in l2s]


def probe_into(fc: nn.Linear, f: torch.Tensor, y: torch.Tensor, fv: torch.Tensor, yv: torch.Tensor,
               weight: torch.Tensor | None, l2s: Sequence[float]):
    """Set ``fc`` to the linear probe on frozen features (exact L-BFGS, the penalty chosen on validation);
    returns the probe's :class:`Fit`."""
    fits = fit_linear_lbfgs(f, y, fv, yv, fc.out_features, weight, tuple(l2s))
    best = min(fits, key=lambda fit: (-fit.val_accuracy, fit.val_loss))
    with torch.no_grad():
        fc.weight.copy_(best.model.weight)
        fc.bias.copy_(best.model.bias)
    return best


def lbfgs(params: list[torch.Tensor], max_iter: int) -> torch.optim.LBFGS:
    """The full-batch L-BFGS of the linear heads (in memory and streamed): tight tolerances, strong Wolfe."""
    return torch.optim.LBFGS(params, lr=1, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=1e-6,
                             tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")


def fit_prototypes(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, k: int) -> Fit:
    """Nearest class mean (standardized features) as a linear layer: logits x.mu_c - |mu_c|^2 / 2, the
    Gaussian log-likelihood with one shared identity covariance. No penalty to choose: a head for
    few-shot sets, where a fitted classifier has too little to learn from."""
    mu = torch.zeros(k, x.shape[1], device=x.device).index_add_(0, y, x)
    mu = mu / torch.bincount(y, minlength=k).clamp(min=1)[:, None].to(x.dtype)
    model, acc = linear_from(mu.t(), -0.5 * mu.square().sum(1), xv, yv)
    loss = evaluate_loss(model, xv, yv, nn.CrossEntropyLoss()) if len(yv) else float("nan")
    return Fit(model, 0.0, loss, acc, 0, [])


def linear_from(w: torch.Tensor, b: torch.Tensor, xv, yv: torch.Tensor) -> tuple[nn.Linear, float]:
    """An ``nn.Linear`` holding weights ``w`` (dim, k) and bias ``b``, and its validation accuracy."""
    model = nn.Linear(*w.shape).to(w.device)
    with torch.no_grad():
        model.weight.copy_(w.t())
        model.bias.copy_(b)
        acc = float((forward(model, xv).argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return model.eval(), acc


def evaluate_loss(model: nn.Module, x, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(forward(model, x), y)) if len(y) else float("inf")


def predict_proba(model: nn.Module, x, mean: np.ndarray, std: np.ndarray, device: str = "cpu",
                  batch: int = 65536, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``x`` (dense array or CSR matrix) in batches of rows."""
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            xb = to_device(x[start:start + batch], mean.astype(np.float32), std.astype(np.float32), device, train=False)
            out.append(torch.softmax(forward(model, xb) / temperature, dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
