"""The recipe of the network fine-tune (network.py), each part kept by measurement on domain-shifted dev sets
(benchmarks/finetune.py, docs/heads.md): a training resolution that fits the images, layer-wise learning-rate
decay, a linear warm-up then a cosine schedule, and a time budget that picks the epochs (then the resolution)
from the measured speed of a few training steps."""
from __future__ import annotations

import dataclasses
import math
import statistics
import time

import torch
from torch import nn

MIN_SIZE = 64  # below it EfficientNet's last stage sees 1x1 maps: tiny images are upsampled to this at least
SIZE_STEP = 32  # the network's total stride: sizes are multiples of it
MIN_EPOCHS = 8  # fewer than this at a resolution: the budget lowers the resolution (down to MIN_SIZE)
WARMUP_SHARE = 0.1  # linear warm-up over this share of the steps (at least one epoch's worth when short)


def fitting_size(sizes: list[tuple[int, int]], model_size: int) -> int:
    """A training resolution that fits images of these (width, height): twice their median shorter side
    (upsampling helps small images up to about that, measured), a multiple of 32, ``MIN_SIZE`` at least and
    the model's own size at most (larger images learn at the size the weights were trained at)."""
    short = statistics.median(min(w, h) for w, h in sizes) if sizes else model_size
    size = SIZE_STEP * math.ceil(2 * short / SIZE_STEP)
    return int(min(max(size, MIN_SIZE), max(model_size, MIN_SIZE)))


def image_sizes(paths: list[str], limit: int = 200) -> list[tuple[int, int]]:
    """(width, height) of up to ``limit`` evenly spaced files, read from their headers (no decode)."""
    from PIL import Image

    step = max(1, len(paths) // limit)
    sizes = []
    for path in paths[::step][:limit]:
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
        except Exception:  # noqa: BLE001  an unreadable file is skipped (and reported) when training reads it
            continue
    return sizes


def lower_size(size: int) -> int:
    """The next resolution down the budget tries: three quarters, a multiple of 32, ``MIN_SIZE`` at least."""
    return max(MIN_SIZE, SIZE_STEP * round(0.75 * size / SIZE_STEP))


def layer_rates(groups: list[list[nn.Parameter]], head: list[nn.Parameter], lr: float, decay: float,
                weight_decay: float) -> list[dict]:
    """AdamW parameter groups: the classifier at ``lr``, the top group of the network at ``lr * decay``, each
    group below at ``decay`` times the one above (the low layers hold the most general features: ULMFiT,
    BEiT's layer decay)."""
    depth = len(groups)
    out = [{"params": g, "lr": lr * decay ** (depth - i)} for i, g in enumerate(groups) if g]
    return out + [{"params": head, "lr": lr}]


class WarmupCosine:
    """Linear warm-up (the new classifier's gradients are large at first), then a cosine down to zero over
    ``total_steps``, which the budget may shorten after an epoch measured slower than planned."""

    def __init__(self, opt: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int):
        self.total, self.per_epoch = total_steps, steps_per_epoch
        self.warm = max(1, min(steps_per_epoch, int(WARMUP_SHARE * total_steps)))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(opt, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warm) / max(1, self.total - self.warm))))

    def shorten(self, epochs: int) -> None:
        self.total = min(self.total, epochs * self.per_epoch)

    def step(self) -> None:
        self.scheduler.step()


@dataclasses.dataclass
class Plan:
    """What the budget allowed: the resolution, the epochs, the estimated seconds per epoch and of the
    passes run once (the probe's, the extraction again)."""

    size: int
    epochs: int
    epoch_s: float
    once_s: float
    budget_s: float | None
    asked_epochs: int
    sizes_tried: list[int]

    def describe(self) -> dict:
        return {"train_size": self.size, "epochs_planned": self.epochs, "epoch_s_estimate": round(self.epoch_s, 2),
                "budget_minutes": None if self.budget_s is None else round(self.budget_s / 60, 2),
                "sizes_tried": self.sizes_tried, "budget_limited": self.epochs < self.asked_epochs}


EVAL_COST = 0.25  # a validation or extraction image costs about this share of a training image (forward only)


def plan_budget(seconds_per_image, size: int, n_train: int, n_val: int, n_once: int, max_epochs: int,
                budget_s: float | None) -> Plan:
    """The epochs (and, when fewer than ``MIN_EPOCHS`` fit, a lower resolution) that fit ``budget_s``:
    ``seconds_per_image(size)`` is measured; each epoch trains ``n_train`` images and validates ``n_val``,
    and ``n_once`` images pass forward once (the probe at this size, the extraction again at the end)."""
    tried = []
    while True:
        tried.append(size)
        per_image = seconds_per_image(size)
        epoch_s, once_s = per_image * (n_train + EVAL_COST * n_val), per_image * EVAL_COST * n_once
        if budget_s is None:
            return Plan(size, max_epochs, epoch_s, once_s, None, max_epochs, tried)
        epochs = min(max_epochs, int((budget_s - once_s) // epoch_s))
        if epochs >= min(MIN_EPOCHS, max_epochs) or size <= MIN_SIZE:
            return Plan(size, max(0, epochs), epoch_s, once_s, budget_s, max_epochs, tried)
        size = lower_size(size)


def time_steps(model: nn.Module, loss_fn, batch: int, size: int, steps: int = 3) -> float:
    """Seconds per training image at ``size``: a few forward + backward passes on a random batch (no update)."""
    device = next(model.parameters()).device
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    from ..extractors.runtime import autocast

    best = float("inf")
    for _ in range(steps + 1):  # the first pass warms kernels up and is not counted
        start = time.perf_counter()
        with autocast(device, torch.bfloat16 if device.type == "cuda" else torch.float32):
            logits = model(x)
        loss_fn(logits.float(), y).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return best / batch
