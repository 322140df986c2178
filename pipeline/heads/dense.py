"""What the kinds over feature vectors share: the standardized design on the device, the best candidate
of a sweep, the refit on train + validation, the calibrated temperature, the test logits, and
scikit-learn's reference fit beside the head."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import MmfeatError
from ..progress import log
from .calibration import helpful_temperature
from .design import forward, is_sparse, scaled, standardization, to_device, vstack
from .registry import TrainJob
from .metrics import sklearn_baseline

# The comparison fit doubles train time on mid-size sets (55 s vs 17 s measured at ~20k x 1280): by
# default it runs only up to this many training values (rows x features), e.g. 10k x 512.
SKLEARN_AUTO_VALUES = 5_000_000


@dataclasses.dataclass
class Design:
    """Standardized train and validation features on the device (dense tensors or sparse designs)."""

    x: object
    xv: object
    y: torch.Tensor
    yv: torch.Tensor
    mean: np.ndarray
    std: np.ndarray
    k: int
    sparse: bool


def design(job: TrainJob) -> Design:
    """Standardization fitted on train only (sparse blocks scaled, never centered: design.py)."""
    data = job.data
    if not len(data.val.y) or not len(data.test.y):
        raise MmfeatError(f"too few labelled rows to hold out validation and test data: {data.report['sizes']}")
    mean, std = standardization(data.train.x, data.report["blocks"])
    return Design(to_device(data.train.x, mean, std, job.device), to_device(data.val.x, mean, std, job.device, train=False),
                  torch.from_numpy(data.train.y).to(job.device), torch.from_numpy(data.val.y).to(job.device),
                  mean, std, len(data.classes), is_sparse(data.train.x))


def best_of(fits: list):
    """The candidate with the best validation accuracy, ties broken by validation loss."""
    return min(fits, key=lambda f: (-f.val_accuracy, f.val_loss))


def report_fits(kind: str, fits: list) -> None:
    """One line per setting tried (penalty and class weighting)."""
    for f in fits:
        log.info("%s head, class weights %s, l2=%g: validation accuracy %.4f, loss %.4f", kind, f.weighting, f.l2,
                 f.val_accuracy, f.val_loss)


def temperature_of(model: torch.nn.Module, d: Design) -> float:
    with torch.no_grad():
        return helpful_temperature(forward(model, d.xv), d.yv)


def train_and_val(job: TrainJob, device: str):
    """Train + validation standardized together (a refit), their labels, and the new statistics."""
    data = job.data
    x_all = vstack([data.train.x, data.val.x])
    y_all = np.concatenate([data.train.y, data.val.y])
    mean, std = standardization(x_all, data.report["blocks"])
    return to_device(x_all, mean, std, device), torch.from_numpy(y_all).to(device), y_all, mean, std


def test_logits(model: torch.nn.Module, job: TrainJob, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    model.cpu()
    with torch.no_grad():
        return forward(model, to_device(job.data.test.x, mean, std, "cpu", train=False))


def sklearn_reference(job: TrainJob, mean: np.ndarray, std: np.ndarray, class_weight: str) -> dict | None:
    """scikit-learn's LogisticRegression (C=1) on the same standardized features and splits."""
    data, cfg = job.data, job.cfg
    if not (cfg.sklearn_baseline or (cfg.sklearn_baseline is None and data.train.x.size <= SKLEARN_AUTO_VALUES)):
        return None
    return sklearn_baseline(scaled(data.train.x, mean, std), data.train.y, scaled(data.test.x, mean, std),
                            data.test.y, data.classes, "none" if class_weight == "auto" else class_weight)
