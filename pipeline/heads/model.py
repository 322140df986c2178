"""Linear (multinomial logistic regression) and MLP heads in torch, trained with AdamW + early stopping."""
from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch
from torch import nn

from ..progress import log
from .design import forward, is_sparse, to_device


def build_head(kind: str, dim: int, n_classes: int, hidden: tuple[int, ...], dropout: float) -> nn.Module:
    if kind in ("linear", "prototype"):
        return nn.Linear(dim, n_classes)
    if kind == "sequence":  # dim counts the mask channel
        from .sequence import SequenceHead

        return SequenceHead(dim - 1, n_classes, hidden[0], dropout)
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.GELU(), nn.Dropout(dropout)]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, n_classes))


@dataclasses.dataclass
class Fit:
    model: nn.Module
    l2: float
    val_loss: float
    val_accuracy: float
    epochs: int
    curve: list[tuple[int, float, float]]  # (epoch, train loss, val loss)
    weighting: str = "none"  # the class weighting it was fitted with


class EarlyStopping:
    """The weights of the epoch with the lowest validation loss, and when to stop: ``patience`` epochs
    without a better one (an improvement must beat the best by more than 1e-5)."""

    def __init__(self, model: nn.Module, patience: int, loss: float = float("inf")):
        self.best = copy.deepcopy(model.state_dict())
        self.loss, self.epoch, self.bad, self.patience = loss, 0, 0, patience

    def update(self, model: nn.Module, epoch: int, val_loss: float) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.loss - 1e-5:
            self.best, self.loss, self.epoch, self.bad = copy.deepcopy(model.state_dict()), val_loss, epoch, 0
            return False
        self.bad += 1
        return self.bad >= self.patience


_last_epoch_log = [0.0]


def _log_epoch(epoch: int, message: str, every_s: float = 5.0) -> None:
    """An epoch line at most every few seconds (and the first one), so long trainings show progress."""
    now = time.perf_counter()
    if epoch == 1 or now - _last_epoch_log[0] >= every_s:
        _last_epoch_log[0] = now
        log.info("epoch %d, %s", epoch, message)


def fit_one(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
            class_weight: torch.Tensor | None, l2: float, cfg, seed: int) -> Fit:
    """Mini-batch AdamW on cross-entropy + (l2/2)·||W||² (weights, not biases: sklearn's objective
    with C = 1/(l2·n)); the learning rate decays on validation plateaus; keeps the weights of the
    epoch with the lowest validation loss and stops after ``patience`` epochs without one."""
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    loss_fn = nn.CrossEntropyLoss(weight=class_weight)
    stopping, curve = EarlyStopping(model, cfg.patience), []
    n = len(y)
    # Small training sets still get enough optimizer steps per epoch (at least ~8) to converge.
    batch_size = max(1, min(cfg.batch_size, -(-n // 8)))
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen).to(x.device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            (loss + 0.5 * l2 * sum(w.square().sum() for w in weights)).backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_loss = evaluate_loss(model, xv, yv, loss_fn)
        curve.append((epoch, total / n, val_loss))
        _log_epoch(epoch, f"l2={l2:g}: train loss {total / n:.4f}, validation loss {val_loss:.4f}")
        if stopping.update(model, epoch, val_loss):
            break
        _decay_on_plateau(opt, stopping.bad)
    model.load_state_dict(stopping.best)
    model.eval()
    with torch.no_grad():
        acc = float((model(xv).argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return Fit(model, l2, stopping.loss, acc, stopping.epoch, curve)


def fit_linear_sweep(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, k: int,
                     class_weight: torch.Tensor | None, l2s: tuple[float, ...], cfg, seed: int) -> list[Fit]:
    """The whole L2 sweep of linear heads trained at once, as one stacked (P, dim, k) weight.

    Same objective, optimizer and early stopping per penalty as :func:`fit_one`, but one matmul
    and one optimizer step per mini-batch serve every penalty: the sweep costs about one fit.
    """
    dim, p = x.shape[1], len(l2s)
    torch.manual_seed(seed)
    init = nn.Linear(dim, k)  # the same initialization fit_one's model gets under this seed
    w = nn.Parameter(init.weight.detach().t().expand(p, dim, k).clone().to(x.device))
    b = nn.Parameter(init.bias.detach().expand(p, k).clone().to(x.device))
    l2 = torch.tensor(l2s, dtype=torch.float32, device=x.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    cw = class_weight if class_weight is not None else torch.ones(k, device=x.device)

    def losses(xb, yb):  # (P,) weighted-mean cross-entropy per penalty, as nn.CrossEntropyLoss(weight)
        logits = torch.baddbmm(b.unsqueeze(1), xb.expand(p, *xb.shape), w)
        nll = nn.functional.cross_entropy(logits.reshape(-1, k), yb.repeat(p), reduction="none").view(p, -1)
        return (nll * cw[yb]).sum(1) / cw[yb].sum()

    n = len(y)
    batch_size = max(1, min(cfg.batch_size, -(-n // 8)))
    best_w, best_b = w.detach().clone(), b.detach().clone()
    best_loss = torch.full((p,), float("inf"))
    best_epoch, bad, curves = [0] * p, [0] * p, [[] for _ in range(p)]
    for epoch in range(1, cfg.max_epochs + 1):
        order = torch.randperm(n, generator=gen).to(x.device)
        total = torch.zeros(p, device=x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = losses(x[idx], y[idx])
            (loss.sum() + 0.5 * (l2 * w.square().sum((1, 2))).sum()).backward()
            opt.step()
            total += loss.detach() * len(idx)
        with torch.no_grad():
            val = losses(xv, yv).cpu() if len(yv) else torch.full((p,), float("inf"))
            train = (total / n).cpu()
            improved = val < best_loss - 1e-5
            _log_epoch(epoch, f"{p} penalties: validation loss {float(val.min()):.4f} (best of the sweep)")
            for i in range(p):
                curves[i].append((epoch, float(train[i]), float(val[i])))
                if improved[i]:
                    best_loss[i], best_epoch[i], bad[i] = val[i], epoch, 0
                    best_w[i], best_b[i] = w[i], b[i]
                else:
                    bad[i] += 1
        if min(bad) >= cfg.patience:
            break
        _decay_on_plateau(opt, min(bad))
    fits = []
    for i, penalty in enumerate(l2s):
        model, acc = _linear(best_w[i], best_b[i], xv, yv)
        fits.append(Fit(model, penalty, float(best_loss[i]), acc, best_epoch[i], curves[i][:best_epoch[i] + cfg.patience]))
    return fits


def fit_linear_lbfgs(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, k: int,
                     class_weight: torch.Tensor | None, l2s: tuple[float, ...], max_iter: int = 500) -> list[Fit]:
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
        model, acc = _linear(w.detach(), b.detach(), xv, yv)
        fits[l2] = Fit(model, l2, evaluate_loss(model, xv, yv, loss_fn), acc, len(curve), curve)
        log.info("linear head, l2=%g: validation accuracy %.4f, loss %.4f (%d L-BFGS evaluations)", l2, acc,
                 fits[l2].val_loss, len(curve))
    return [fits[l2] for l2 in l2s]


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
    model, acc = _linear(mu.t(), -0.5 * mu.square().sum(1), xv, yv)
    loss = evaluate_loss(model, xv, yv, nn.CrossEntropyLoss()) if len(yv) else float("nan")
    return Fit(model, 0.0, loss, acc, 0, [])


def _linear(w: torch.Tensor, b: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> tuple[nn.Linear, float]:
    """An ``nn.Linear`` holding weights ``w`` (dim, k) and bias ``b``, and its validation accuracy."""
    model = nn.Linear(*w.shape).to(w.device)
    with torch.no_grad():
        model.weight.copy_(w.t())
        model.bias.copy_(b)
        acc = float((forward(model, xv).argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return model.eval(), acc


PLATEAU_EPOCHS, PLATEAU_FACTOR = 3, 0.3


def _decay_on_plateau(opt: torch.optim.Optimizer, stalled_epochs: int) -> None:
    """Cut the learning rate after every few epochs without a better validation loss, so that the
    weights settle near the optimum of the penalized objective instead of wandering around it
    at a constant step size (the L2 sweep, not optimizer noise, should be the regularizer)."""
    if stalled_epochs and stalled_epochs % PLATEAU_EPOCHS == 0:
        for group in opt.param_groups:
            group["lr"] *= PLATEAU_FACTOR


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(forward(model, x), y)) if len(y) else float("inf")


def predict_proba(model: nn.Module, x, mean: np.ndarray, std: np.ndarray, device: str = "cpu",
                  batch: int = 65536, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``x`` (dense array or CSR matrix) in batches of rows."""
    model.eval().to(device)
    out = []
    n = x.shape[0]
    with torch.no_grad():
        for start in range(0, n, batch):
            xb = to_device(x[start:start + batch], mean.astype(np.float32), std.astype(np.float32), device, train=False)
            out.append(torch.softmax(forward(model, xb) / temperature, dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
