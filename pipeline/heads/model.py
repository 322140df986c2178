"""Linear (multinomial logistic regression) and MLP heads in torch, trained with AdamW + early stopping."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch import nn


def build_head(kind: str, dim: int, n_classes: int, hidden: tuple[int, ...], dropout: float) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, n_classes)
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


def fit_one(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
            class_weight: torch.Tensor | None, l2: float, cfg, seed: int) -> Fit:
    """Mini-batch AdamW on cross-entropy + (l2/2)·||W||² (weights, not biases: sklearn's objective
    with C = 1/(l2·n)); keeps the weights of the epoch with the lowest validation loss."""
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    loss_fn = nn.CrossEntropyLoss(weight=class_weight)
    best, best_loss, best_epoch, bad_epochs, curve = None, float("inf"), 0, 0, []
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
        if val_loss < best_loss - 1e-5:
            best, best_loss, best_epoch, bad_epochs = copy.deepcopy(model.state_dict()), val_loss, epoch, 0
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                break
    model.load_state_dict(best)
    model.eval()
    with torch.no_grad():
        acc = float((model(xv).argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return Fit(model, l2, best_loss, acc, best_epoch, curve)


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y)) if len(y) else float("inf")


def predict_proba(model: nn.Module, x: np.ndarray, mean: np.ndarray, std: np.ndarray, device: str = "cpu",
                  batch: int = 65536) -> np.ndarray:
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = torch.from_numpy((x[start:start + batch] - mean) / std).float().to(device)
            out.append(torch.softmax(model(xb), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
