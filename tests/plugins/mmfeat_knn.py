"""k-nearest neighbours over stored features: a whole head kind in one module (MMFEAT_PLUGINS=mmfeat_knn)."""
import dataclasses
import time

import torch

from pipeline.config import option
from pipeline.heads import HeadKind, TrainedHead, TrainJob, register_head
from pipeline.heads.dense import design, test_logits
from pipeline.heads.training import Fit


@dataclasses.dataclass(frozen=True)
class KNNParams:
    """k-nearest neighbours by Euclidean distance over standardized features (a plugin)."""

    k: int = option(5, "neighbours that vote")

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be >= 1")


class Votes(torch.nn.Module):
    """The training rows (standardized) and labels; log vote shares of the k nearest as logits."""

    def __init__(self, n: int, dim: int, classes: int, k: int):
        super().__init__()
        self.register_buffer("x", torch.zeros(n, dim))
        self.register_buffer("y", torch.zeros(n, dtype=torch.long))
        self.k, self.classes = k, classes

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(q, self.x).topk(min(self.k, len(self.x)), largest=False).indices
        return torch.log(torch.nn.functional.one_hot(self.y[nearest], self.classes).float().mean(1) + 1e-3)


@register_head
class KNNHead(HeadKind):
    name, params_type = "knn", KNNParams

    def train(self, job: TrainJob) -> TrainedHead:
        d, start = design(job), time.perf_counter()
        model = Votes(len(d.y), d.x.shape[1], d.k, self.params.k)
        model.x.copy_(d.x.cpu())
        model.y.copy_(d.y.cpu())
        fit = Fit(model, 0.0, float("nan"), float((model(d.xv.cpu()).argmax(1) == d.yv.cpu()).float().mean()), 0, [])
        return TrainedHead(model, fit, [fit], 1.0, test_logits(model, job, d.mean, d.std), time.perf_counter() - start,
                           "knn", int(d.x.shape[1]), d.mean, d.std, card={"knn": {"n": len(d.y)}})

    def build(self, card: dict) -> torch.nn.Module:
        return Votes(card["knn"]["n"], card["dim"], len(card["classes"]), card["config"]["k"])

    def training_sentence(self, card: dict) -> str:
        return f"The {card['config']['k']} nearest training rows vote (nothing chosen on validation)."
