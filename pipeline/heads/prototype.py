"""``prototype``: nearest class mean on standardized features, a head for few-shot sets (nothing to tune:
a fitted classifier has too little to learn from there); refit on train + validation."""
from __future__ import annotations

import time

import torch

from ..errors import MmfeatError
from . import dense
from .config import PrototypeParams
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .solvers import fit_prototypes
from .training import set_threads


@register_head
class PrototypeHead(HeadKind):
    name = "prototype"
    params_type = PrototypeParams

    def train(self, job: TrainJob) -> TrainedHead:
        set_threads(job.cfg.threads)
        d = dense.design(job)
        if d.sparse:
            raise MmfeatError("sparse features train the linear head with the lbfgs solver; head=prototype needs dense features")
        start = time.perf_counter()
        best = fit_prototypes(d.x, d.y, d.xv, d.yv, d.k)
        temperature = dense.temperature_of(best.model, d)
        model, mean, std, refit = best.model, d.mean, d.std, None
        if self.params.refit:
            x, y, y_all, mean, std = dense.train_and_val(job, job.device)
            model = fit_prototypes(x, y, x[:0], y[:0], d.k).model
            refit = {"on": "train+val", "rows": len(y_all)}
        return TrainedHead(model, best, [best], temperature, dense.test_logits(model, job, mean, std),
                           time.perf_counter() - start, "class means", int(d.x.shape[1]), mean, std, (), refit,
                           reference=dense.sklearn_reference(job, mean, std, "none"))

    def build(self, card: dict) -> torch.nn.Module:
        return torch.nn.Linear(card["dim"], len(card["classes"]))

    def training_sentence(self, card: dict) -> str:
        return "Class means of the standardized features (nothing chosen on validation but the calibration)."
