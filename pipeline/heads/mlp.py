"""``mlp``: a multilayer perceptron (GELU, dropout) on standardized features, one AdamW fit per penalty of
the sweep with early stopping, the best chosen on validation; no refit (the epoch count is validation's)."""
from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn

from ..errors import MmfeatError
from . import dense
from .config import MLPParams
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .solvers import fit_one
from .training import class_weights, set_threads, weightings


def mlp(dim: int, n_classes: int, hidden: tuple[int, ...], dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.GELU(), nn.Dropout(dropout)]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, n_classes))


@register_head
class MLPHead(HeadKind):
    name = "mlp"
    params_type = MLPParams

    def train(self, job: TrainJob) -> TrainedHead:
        set_threads(job.cfg.threads)
        d = dense.design(job)
        if d.sparse:
            raise MmfeatError("sparse features train the linear head with the lbfgs solver; head=mlp needs dense features")
        p = self.params
        start = time.perf_counter()
        fits = []
        for weighting in weightings(p.class_weight):
            weight = class_weights(job.data.train.y, d.k, weighting, job.device)
            for l2 in p.l2_penalties:
                torch.manual_seed(job.cfg.seed)
                model = mlp(d.x.shape[1], d.k, tuple(p.hidden), p.dropout).to(job.device)
                fit = fit_one(model, d.x, d.y, d.xv, d.yv, weight, l2, p, job.cfg.seed)
                fits.append(dataclasses.replace(fit, weighting=weighting))
        dense.report_fits("mlp", fits)
        best = dense.best_of(fits)
        temperature = dense.temperature_of(best.model, d)
        return TrainedHead(best.model, best, fits, temperature, dense.test_logits(best.model, job, d.mean, d.std),
                           time.perf_counter() - start, "adamw", int(d.x.shape[1]), d.mean, d.std, tuple(p.l2_penalties),
                           reference=dense.sklearn_reference(job, d.mean, d.std, p.class_weight))

    def build(self, card: dict) -> torch.nn.Module:
        config = card["config"]
        return mlp(card["dim"], len(card["classes"]), tuple(config.get("hidden") or (512,)),
                   float(config.get("dropout", 0.0)))
