"""Training a pretrained top on stored tensors (a cnn block's activations, a bert layer's token states): the
recipe the image and text tops share. LP-FT: the classifier starts as the linear probe on the frozen top's
pooled features; pretrained layers at lr/30 and the classifier at lr/10; batch-norm statistics frozen;
image feature maps flipped left-right at random; early stopping keeps the best epoch by validation loss,
the probe itself (epoch 0) included, so tuning never ends below it; a kept probe is refit on train +
validation, as the linear head is."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from .calibration import helpful_temperature
from .registry import TrainedHead, TrainJob
from .solvers import probe_into
from .training import (HEAD_LR_FACTOR, PRETRAINED_LR_FACTOR, EarlyStopping, Fit, class_weights, frozen_batch_norm,
                       keep_state, lp_ft_optimizer, minibatches, set_threads, train_epochs)


def train_top(job: TrainJob, model: nn.Module, as_input: Callable[[np.ndarray], torch.Tensor],
              flip: bool) -> tuple[TrainedHead, dict]:
    """Tune ``model`` (a top with ``pooled``, ``fc`` and ``pretrained_parameters``) on the job's tensors;
    returns the trained head and the recipe's figures for the card."""
    set_threads(job.cfg.threads)
    data, p, device = job.data, job.params, job.device
    x, xv = as_input(data.train.x), as_input(data.val.x).to(device)
    y, yv = torch.from_numpy(data.train.y), torch.from_numpy(data.val.y).to(device)
    torch.manual_seed(job.cfg.seed)
    model.to(device)
    weighting = "balanced" if p.class_weight == "balanced" else "none"
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(data.train.y, len(data.classes), weighting, device))
    probe = _probe(model, x, y, xv, yv, loss_fn, p.l2_penalties, device)
    opt = lp_ft_optimizer(model.pretrained_parameters(), list(model.fc.parameters()), p.lr, p.weight_decay)
    gen = torch.Generator().manual_seed(job.cfg.seed)

    def run_epoch(_: int) -> float:
        frozen_batch_norm(model.train())
        total = 0.0
        for idx in minibatches(len(y), min(p.batch_size, 64), gen, "cpu"):
            xb = x[idx].to(device)
            if flip:  # feature maps flip left-right as images do; token states have no such symmetry
                flips = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
                xb[flips] = xb[flips].flip(-1)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), y[idx].to(device))
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        return total / len(y)

    keep, restore = keep_state(model)
    probe_loss = evaluate(model, xv, yv, loss_fn)
    stopping = EarlyStopping(p.patience, keep, [probe_loss])  # epoch 0: the probe
    start = time.perf_counter()
    rows = train_epochs(p.max_epochs, run_epoch, lambda: [evaluate(model, xv, yv, loss_fn)], stopping,
                        lambda e, t, v: f"finetune: train loss {t:.4f}, validation loss {v[0]:.4f}", log_every_s=0)
    restore()
    val_logits = logits_of(model, xv)
    curve = [(0, float("nan"), probe_loss)] + [(e, t, v[0]) for e, t, v in rows]
    fit = Fit(model, 0.0, stopping.losses[0], float((val_logits.argmax(1) == yv.cpu()).float().mean()),
              stopping.epochs[0], curve, weighting)
    temperature = helpful_temperature(val_logits, yv.cpu())
    if stopping.epochs[0] == 0:  # the probe stays: refit on train + validation, as the linear head is
        _refit_probe(model, x, y, xv, yv, loss_fn, probe.l2, device)
    seconds = time.perf_counter() - start
    model.cpu()
    test = logits_of(model, as_input(data.test.x))
    recipe = {"pretrained_lr": p.lr * PRETRAINED_LR_FACTOR, "head_lr": p.lr * HEAD_LR_FACTOR, "probe_l2": probe.l2}
    return TrainedHead(model, fit, [fit], temperature, test, seconds, "adamw", 0), recipe


def _probe(model: nn.Module, x, y, xv, yv, loss_fn, l2s, device):
    """The classifier set to the linear probe on the frozen top's pooled features."""
    model.eval()
    with torch.no_grad():
        f, fv = _pooled(model, x, device), _pooled(model, xv, device)
    return probe_into(model.fc, f, y.to(device), fv, yv, loss_fn.weight, l2s)


def _refit_probe(model: nn.Module, x, y, xv, yv, loss_fn, l2: float, device) -> None:
    """The kept probe fitted again on train + validation at its penalty (scikit-learn's C kept): the
    validation rows that chose it are not lost to the head, as for the linear head's refit."""
    model.eval()
    with torch.no_grad():
        f = torch.cat([_pooled(model, x, device), _pooled(model, xv, device)])
    y_all = torch.cat([y.to(device), yv.to(device)])
    probe_into(model.fc, f, y_all, f[:0], y_all[:0], loss_fn.weight, [l2 * len(y) / len(y_all)])


def _pooled(model: nn.Module, t: torch.Tensor, device) -> torch.Tensor:
    return torch.cat([model.pooled(t[i:i + 256].to(device)) for i in range(0, len(t), 256)])


def logits_of(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = [model(x[i:i + batch].to(next(model.parameters()).device)).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.zeros(0, model.fc.out_features)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    return float(loss_fn(logits_of(model, x).to(y.device), y)) if len(y) else float("inf")


def predict_tensors(model: nn.Module, x: np.ndarray, shape: list[int], temperature: float) -> np.ndarray:
    """Class probabilities through a tuned top: activation rows (n, C*H*W) reshaped to ``shape``, or padded
    token states (n, T, d + 1) as they are (``shape`` empty)."""
    x = np.ascontiguousarray(x)
    logits = logits_of(model, torch.from_numpy(x.reshape(-1, *shape) if shape else x))
    return torch.softmax(logits / temperature, 1).numpy()


def sentence(card: dict, what: str) -> str:
    """The report's account of a fine-tune, saying plainly when the probe was kept."""
    info = card["data"]["finetune"]
    epoch = card["selected"]["epoch"]
    kept = (" Fine-tuning did not beat the linear probe on validation: the head is the probe (epoch 0)."
            if epoch == 0 else f" The epoch ({epoch}) was chosen by early stopping on validation.")
    return (f"{what} ({', '.join(info['tuned'])}) were fine-tuned with a new classifier (learning rates "
            f"{info['pretrained_lr']:g} and {info['head_lr']:g}).{kept}")
