"""Calibrated probabilities: one temperature fitted on validation logits (Guo et al. 2017), and the
expected calibration error that says how far predicted confidences are from observed accuracy."""
from __future__ import annotations

import numpy as np
import torch


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The T > 0 minimizing validation NLL of softmax(logits / T); 1.0 when there is no validation data."""
    if len(y) == 0:
        return 1.0
    logits, y = logits.detach().float().cpu(), y.cpu()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(objective)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 1e-2 <= t <= 1e2 else 1.0


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width confidence bins, weighted by their size."""
    if len(y) == 0:
        return float("nan")
    confidence, predicted = proba.max(1), proba.argmax(1)
    correct = predicted == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def helpful_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The fitted temperature when it calibrates the validation logits better (lower ECE) than none,
    else 1.0: a temperature that makes validation calibration worse is not applied."""
    t = fit_temperature(logits, y)
    if t == 1.0 or len(y) == 0:
        return 1.0
    logits, labels = logits.detach().float().cpu(), y.cpu().numpy()
    before = expected_calibration_error(torch.softmax(logits, 1).numpy(), labels)
    after = expected_calibration_error(torch.softmax(logits / t, 1).numpy(), labels)
    return t if after < before else 1.0
