"""``linear``: multinomial logistic regression on standardized features (dense, sparse or fused), the L2
penalty and class weighting chosen on validation, refit on train + validation (as
``LogisticRegressionCV(refit=True)``), calibrated by one temperature. Exact L-BFGS along the penalty path
by default; the sweep as one stacked AdamW model for sets over 4 GiB (``solver=adamw``); streamed from
scratch files when the features exceed ``memory_gb`` (streamed.py)."""
from __future__ import annotations

import dataclasses
import time

import torch

from ..errors import MmfeatError
from ..progress import log
from . import dense, fusion
from .config import ADAMW_KEYS, HeadConfig, LinearParams
from .design import SPARSE_L2_PENALTIES
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .solvers import fit_linear_lbfgs, fit_linear_sweep
from .training import class_weights, set_threads, weightings

IN_MEMORY_LBFGS_BYTES = 4 << 30  # solver=auto: L-BFGS on the device up to this many bytes of features


@register_head
class LinearHead(HeadKind):
    name = "linear"
    params_type = LinearParams

    def streams(self, sets, cfg: HeadConfig) -> bool:
        """One dense set whose features (about four copies of them in memory) exceed ``memory_gb``."""
        from .streamed import feature_bytes

        big = len(sets) == 1 and feature_bytes(sets[0]) * 4 > cfg.memory_gb * (1 << 30)
        if big and (sets[0].sparse or sets[0].tensor_shape or self.params.solver == "adamw"):
            log.warning("features exceed memory_gb=%g, but only a linear L-BFGS head on one dense set trains "
                        "streamed: loading them whole", cfg.memory_gb)
            return False
        return big

    def train(self, job: TrainJob) -> TrainedHead:
        set_threads(job.cfg.threads)
        if job.data.train.x.shape[1] == 0:  # the join carried no features: they stream from the set
            from .streamed import train_streamed

            return train_streamed(job, self.params)
        d = dense.design(job)
        p = self.params
        start = time.perf_counter()
        solver = p.solver if p.solver != "auto" else (
            "lbfgs" if d.sparse or d.x.numel() * 4 <= IN_MEMORY_LBFGS_BYTES else "adamw")
        if d.sparse and solver == "adamw":
            raise MmfeatError("sparse features train the linear head with the lbfgs solver; solver=adamw needs dense features")
        penalties = SPARSE_L2_PENALTIES if d.sparse and p.l2_penalties == LinearParams.l2_penalties else p.l2_penalties
        fits = []
        for weighting in weightings(p.class_weight):
            weight = class_weights(job.data.train.y, d.k, weighting, job.device)
            tagged = fit_linear_lbfgs(d.x, d.y, d.xv, d.yv, d.k, weight, penalties) if solver == "lbfgs" else \
                fit_linear_sweep(d.x, d.y, d.xv, d.yv, d.k, weight, penalties, p, job.cfg.seed)
            fits += [dataclasses.replace(f, weighting=weighting) for f in tagged]
        dense.report_fits("linear", fits)
        best = dense.best_of(fits)
        temperature = dense.temperature_of(best.model, d)
        model, mean, std, refit = best.model, d.mean, d.std, None
        if p.refit:
            model, mean, std, refit = self._refit(job, best)
        report = {}
        if len(job.data.report["blocks"]) > 1 and p.fusion != "early" and solver == "lbfgs":
            best, model, report["fusion"] = fusion.choose(job, d, best, model, mean, std, penalties, p.fusion, p.refit)
            if report["fusion"]["chosen"] == "late":
                temperature = dense.temperature_of(best.model, d)
                if refit:
                    refit = {**refit, "l2": [part["l2"] * len(job.data.train.y) / refit["rows"]
                                             for part in report["fusion"]["late"]["parts"]]}
        params = {k: v for k, v in dataclasses.asdict(p).items() if solver != "lbfgs" or k not in ADAMW_KEYS}
        return TrainedHead(model, best, fits, temperature, dense.test_logits(model, job, mean, std),
                           time.perf_counter() - start, solver, int(d.x.shape[1]), mean, std, tuple(penalties), refit,
                           params=params, reference=dense.sklearn_reference(job, mean, std, p.class_weight),
                           report=report)

    def _refit(self, job: TrainJob, best):
        """The chosen setting fitted again on train + validation: the validation rows that chose it are not
        lost to the final model. The penalty keeps scikit-learn's C (l2 scales with 1/n)."""
        x, y, y_all, mean, std = dense.train_and_val(job, job.device)
        weight = class_weights(y_all, len(job.data.classes), best.weighting, job.device)
        l2 = best.l2 * len(job.data.train.y) / len(y_all)
        fit = fit_linear_lbfgs(x, y, x[:0], y[:0], len(job.data.classes), weight, [l2])[0]
        return fit.model, mean, std, {"on": "train+val", "rows": len(y_all), "l2": l2}

    def build(self, card: dict) -> torch.nn.Module:
        return torch.nn.Linear(card["dim"], len(card["classes"]))
