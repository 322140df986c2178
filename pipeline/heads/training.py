"""The one epoch loop every trained kind runs (AdamW mini-batches, early stopping on validation loss with an
epoch-0 candidate, learning-rate decay on plateaus, progress lines), and the LP-FT set-up the fine-tuned
kinds share (the classifier starts as the linear probe; pretrained layers and classifier at their own rates).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..progress import log


@dataclasses.dataclass
class Fit:
    """One candidate of a sweep: its model, penalty, validation figures and learning curve."""

    model: nn.Module
    l2: float
    val_loss: float
    val_accuracy: float
    epochs: int
    curve: list[tuple[int, float, float]]  # (epoch, train loss, val loss)
    weighting: str = "none"  # the class weighting it was fitted with


class EarlyStopping:
    """The best epoch by validation loss of each of ``n`` candidates trained together (one model, or a
    stack of penalties), and when to stop: ``patience`` epochs without a better loss for every candidate
    (an improvement beats the best by more than 1e-5). ``keep(i)`` saves candidate i's current weights;
    ``losses`` are the epoch-0 candidates' (the probe a fine-tune starts from), infinite by default."""

    def __init__(self, patience: int, keep: Callable[[int], None], losses: Sequence[float] = (float("inf"),)):
        self.patience, self.keep = patience, keep
        self.losses, self.epochs, self.bad = list(losses), [0] * len(losses), [0] * len(losses)
        for i in range(len(losses)):
            keep(i)

    def update(self, epoch: int, losses: Sequence[float]) -> bool:
        """Record an epoch's validation losses; True when training should stop."""
        for i, loss in enumerate(losses):
            if loss < self.losses[i] - 1e-5:
                self.losses[i], self.epochs[i], self.bad[i] = float(loss), epoch, 0
                self.keep(i)
            else:
                self.bad[i] += 1
        return self.stalled >= self.patience

    @property
    def stalled(self) -> int:
        return min(self.bad)


def keep_state(model: nn.Module) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(keep, restore) for one model: ``keep`` copies its weights, ``restore`` loads the copy kept last."""
    saved: dict = {}

    def keep(_: int) -> None:
        saved["state"] = copy.deepcopy(model.state_dict())

    return keep, lambda: model.load_state_dict(saved["state"])


PLATEAU_EPOCHS, PLATEAU_FACTOR = 3, 0.3


def decay_on_plateau(opt: torch.optim.Optimizer) -> Callable[[int], None]:
    """Cut the learning rate after every few epochs without a better validation loss, so that the weights
    settle near the optimum of the penalized objective instead of wandering around it at a constant step
    (the L2 sweep, not optimizer noise, should be the regularizer)."""
    def on_stall(stalled_epochs: int) -> None:
        if stalled_epochs and stalled_epochs % PLATEAU_EPOCHS == 0:
            for group in opt.param_groups:
                group["lr"] *= PLATEAU_FACTOR
    return on_stall


def train_epochs(max_epochs: int, run_epoch: Callable[[int], object], validate: Callable[[], Sequence[float]],
                 stopping: EarlyStopping, describe: Callable[[int, object, Sequence[float]], str],
                 on_stall: Callable[[int], None] | None = None, log_every_s: float = 5.0,
                 out_of_time: Callable[[int], bool] | None = None) -> list[tuple]:
    """Run epochs until ``stopping`` says so; returns (epoch, train losses, validation losses) per epoch.
    ``run_epoch(epoch)`` trains one epoch and returns its train loss (or one per candidate). A line every
    ``log_every_s`` seconds of a long training (short fits print nothing; the kind reports their result).
    ``out_of_time(epoch)`` True after an epoch ends the training there (a time budget spent)."""
    rows, last_log = [], time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        train = run_epoch(epoch)
        val = list(validate())
        rows.append((epoch, train, val))
        now = time.perf_counter()
        if now - last_log >= log_every_s:
            last_log = now
            log.info("epoch %d, %s", epoch, describe(epoch, train, val))
        if stopping.update(epoch, val) or (out_of_time is not None and out_of_time(epoch)):
            break
        if on_stall is not None:
            on_stall(stopping.stalled)
    return rows


def minibatches(n: int, batch_size: int, gen: torch.Generator, device) -> list[torch.Tensor]:
    """A shuffled epoch's index batches; small sets still get about eight optimizer steps an epoch."""
    size = max(1, min(batch_size, -(-n // 8)))
    order = torch.randperm(n, generator=gen).to(device)
    return [order[i:i + size] for i in range(0, n, size)]


def class_weights(y: np.ndarray, k: int, weighting: str, device: str) -> torch.Tensor | None:
    """Per-class loss weights: n / (k · count) when balanced, none otherwise."""
    if weighting != "balanced":
        return None
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return torch.tensor(len(y) / (k * np.maximum(counts, 1)), dtype=torch.float32, device=device)


def weightings(class_weight: str) -> tuple[str, ...]:
    """The class weightings a sweep tries. auto: both. Balanced weights trade accuracy for recall of rare
    classes: on an imbalanced question set (TREC-6, same test distribution) they cost 10 points."""
    return ("balanced", "none") if class_weight == "auto" else (class_weight,)


# LP-FT (Kumar et al., 2022: fine-tuning from a random classifier distorts the pretrained features): the
# classifier starts as the linear probe, then everything trains at small rates. Measured without the probe
# start (random classifier, lr/10 and lr): 1-4 points under the frozen head.
PRETRAINED_LR_FACTOR, HEAD_LR_FACTOR = 1 / 30, 1 / 10


def lp_ft_optimizer(pretrained: list[nn.Parameter], head: list[nn.Parameter], lr: float,
                    weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW([{"params": pretrained, "lr": lr * PRETRAINED_LR_FACTOR},
                              {"params": head, "lr": lr * HEAD_LR_FACTOR}], weight_decay=weight_decay)


def frozen_batch_norm(model: nn.Module) -> nn.Module:
    """Batch-norm layers back in eval mode: their pretrained statistics stay (small batches would corrupt
    them; measured on the 32-px photos, network tuned whole: 88.0% frozen, 86.0% updated); their affine
    weights still learn."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def set_threads(threads: int | None) -> None:
    """Torch threads only where the user asked (``threads``): otherwise torch's own setting stands."""
    from ..extractors.runtime import use_threads

    use_threads(threads)
