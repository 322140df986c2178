"""Likely label errors: out-of-fold class probabilities of a linear head (each item predicted by a head that
never saw it), ranked by self-confidence with confident learning (cleanlab's ``find_label_issues``: a
maintained implementation of Northcutt et al., with the per-class thresholds and pruning done right)."""
from __future__ import annotations

import numpy as np
import torch

from ..heads.config import DEFAULT_L2
from ..heads.design import SPARSE_L2_PENALTIES, forward, is_sparse, rows, standardization, to_device
from ..heads.solvers import fit_linear_lbfgs


def out_of_fold(x, y: np.ndarray, k: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n, k) probabilities, each row from a linear head fitted on the other folds (stratified); the penalty
    is chosen once, on the first fold."""
    order = np.random.default_rng(seed).permutation(len(y))
    fold_of = np.empty(len(y), np.int64)
    for c in range(k):  # stratified: each class dealt round-robin over the folds
        members = order[y[order] == c]
        fold_of[members] = np.arange(len(members)) % folds
    blocks = [{"dim": x.shape[1], "sparse": is_sparse(x)}]
    grid = SPARSE_L2_PENALTIES if is_sparse(x) else DEFAULT_L2
    out = np.zeros((len(y), k), np.float32)
    l2 = None
    for f in range(folds):
        held, kept = fold_of == f, fold_of != f
        mean, std = standardization(rows(x, kept), blocks)
        xt, xh = to_device(rows(x, kept), mean, std, "cpu"), to_device(rows(x, held), mean, std, "cpu", train=False)
        yt, yh = torch.from_numpy(y[kept]), torch.from_numpy(y[held])
        fits = fit_linear_lbfgs(xt, yt, xh, yh, k, None, [l2] if l2 is not None else grid)
        best = min(fits, key=lambda fit: (-fit.val_accuracy, fit.val_loss))
        l2 = best.l2
        with torch.no_grad():
            logits = forward(best.model, xh)
        out[held] = torch.softmax(logits, 1).numpy()
    return out


def label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of likely mislabelled rows, the least self-confident first."""
    from cleanlab.filter import find_label_issues

    counts = np.bincount(labels, minlength=probs.shape[1])
    if (counts[counts > 0] < 2).any() or (counts > 0).sum() < 2:
        return np.zeros(0, np.int64)
    return np.asarray(find_label_issues(labels, probs, return_indices_ranked_by="self_confidence"), np.int64)
