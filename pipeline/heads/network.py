"""``network`` (``--head finetune`` on a pooled ``cnn`` set): the network itself fine-tuned on the images.

The pretrained network's last ``tune_blocks`` blocks (all its layers when unset) and a new classifier
train on the images, read again through the extraction's own decode path (the dataset the set is bound
to) at a resolution that fits them, under the recipe of recipe.py: TrivialAugment, random crops and flips,
label smoothing, layer-wise rates, warm-up then cosine over the epochs ``max_minutes`` allows, batch-norm
statistics frozen. LP-FT: the classifier starts as the probe at the training resolution. Epoch 0 is the
linear head on the stored features (as ``--head linear`` trains it); epochs are chosen by validation
accuracy. On CUDA the forward pass runs in bfloat16 autocast.

When tuning beats the probe, the tuned network is written as cnn weights (``<head>/networks/<sha>.pth``),
the dataset is extracted again with them (a new feature set, through the weights' hash: network_set.py),
and the head is the tuned classifier on that set. When the probe (epoch 0) stays best, nothing is written
or extracted again: the head is that linear head, and the report says so.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch
from torch import nn

from ..errors import MmfeatError
from ..progress import log
from .config import FinetuneParams
from .image_batches import TrainingImages, item_paths, training_batch
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .network_set import NETWORK_FILE, extract_tuned, kept_probe, network_weights  # noqa: F401
from .solvers import probe_into
from .tops import sentence
from .recipe import (Plan, WarmupCosine, fitting_size, image_sizes, layer_rates, plan_budget,
                     time_steps)
from .training import (EarlyStopping, Fit, class_weights, frozen_batch_norm, keep_state, set_threads,
                       train_epochs)

# The classifier's rate is lr/3 (1e-3 by default), the blocks below it decayed from there: on spoken keywords
# as spectrogram images, lr/10 reached 83.7% and lr/3 85.3% (frozen head 76.7%). The tops keep lr/10
# (training.py): they start from the network's own top, not a new domain.
NETWORK_LR_FACTOR = 1 / 3


@dataclasses.dataclass
class Tuning:
    """A network being tuned: the model with its new classifier, what is tuned, and how images reach it."""

    model: nn.Module
    fc: nn.Linear
    adapter: object  # extractors.image.surgery.Surgery
    original_fc: dict
    tuned: list[str]
    images: TrainingImages | None
    loss_fn: nn.Module  # validation: plain cross-entropy (class-weighted as asked)
    train_loss: nn.Module  # training: the same, label-smoothed
    base: object  # the CNNConfig of the base set
    base_crop: int  # its crop size in px


@register_head
class NetworkTune(HeadKind):
    name = "network"
    family = "finetune"
    params_type = FinetuneParams

    def accepts(self, sets) -> bool:
        return len(sets) == 1 and sets[0].manifest.get("extractor") == "cnn" and sets[0].tensor_shape is None

    def needs(self) -> str:
        return "pooled cnn features (the network is tuned on the images)"

    def check(self, sets, cfg) -> None:
        config = sets[0].manifest["config"]
        if config.get("activations") or tuple(config.get("layers", ())) != ("penultimate",) or config.get("flip_tta"):
            raise MmfeatError("network fine-tuning starts from a cnn set of penultimate features (no activations, "
                              "layers or flip_tta)")

    def train(self, job: TrainJob) -> TrainedHead:
        set_threads(job.cfg.threads)
        deadline = None if job.params.max_minutes is None else time.perf_counter() + 60 * job.params.max_minutes
        tuning = _prepare(job)
        stored = _stored_probe(job)
        plan = _plan(job, tuning, deadline)
        log.info("network fine-tuning at %d px: %d epochs of about %.0f s planned%s", plan.size, plan.epochs,
                 plan.epoch_s, f" within max_minutes={job.params.max_minutes:g}" if deadline is not None else "")
        tuning.images = TrainingImages(job.sets[0], _at_size(tuning, plan.size), job.data, job.params.batch_size,
                                       job.cfg.seed, torch.device(job.device), job.params.augment)
        start = time.perf_counter()
        start_probe = _probe_at_size(job, tuning)
        stopping, curve, accuracy = _tune(job, tuning, plan, stored.best, deadline)
        seconds = time.perf_counter() - start
        info = {"mode": "network", "model": tuning.base.model, "tuned": tuning.tuned, "tune_blocks": job.params.tune_blocks,
                "base_feature_set": job.sets[0].name, "base_config_id": job.sets[0].config_id,
                **tuning.images.describe(), **plan.describe(), "epochs_run": len(curve) - 1,
                "seconds_per_epoch": round(seconds / max(len(curve) - 1, 1), 2),
                "pretrained_lr": job.params.lr * NETWORK_LR_FACTOR * job.params.layer_decay,
                "head_lr": job.params.lr * NETWORK_LR_FACTOR, "probe_l2": stored.best.l2,
                "start_probe_l2": start_probe.l2, "probe_val_accuracy": round(stored.best.val_accuracy, 4),
                "unreadable_skipped": sorted(tuning.images.skipped)}
        tuned_accuracy = [a for e, a in accuracy.items() if e > 0]
        if tuned_accuracy:
            info["best_tuned_val_accuracy"] = round(max(tuned_accuracy), 4)
        best = stopping.epochs[0]
        if best == 0:
            return kept_probe(stored, dict(info, kept_probe=True), seconds)
        fit = Fit(tuning.fc, stored.best.l2, curve[best][2], accuracy[best], best, curve)
        weights = save_network(tuning, job.head_dir)
        extract_at = None if plan.size == tuning.base_crop else plan.size
        return extract_tuned(job, tuning, fit, dict(info, weights=weights, extract_image_size=extract_at), seconds)

    def build(self, card: dict) -> nn.Module:
        return nn.Linear(card["dim"], len(card["classes"]))

    def check_card(self, card: dict) -> list[str]:
        info = (card.get("data") or {}).get("finetune")
        if not (isinstance(info, dict) and isinstance(info.get("model"), str)
                and (isinstance(info.get("weights"), str) or info.get("kept_probe"))):
            return ["a network finetune head's card must name its model and tuned weights (data.finetune)"]
        return []

    def owns(self, card: dict) -> bool:
        info = (card.get("data") or {}).get("finetune") if isinstance(card.get("data"), dict) else None
        return card.get("head") == "finetune" and isinstance(info, dict) and info.get("mode") == "network"

    def training_sentence(self, card: dict) -> str:
        info = card["data"]["finetune"]
        runs = info.get("epochs_run", 0)
        budget = (f"; max_minutes={info['budget_minutes']:g} allowed {info['epochs_planned']} epochs at "
                  f"{info['train_size']} px" + (" (budget-limited)" if info.get("budget_limited") else "")
                  if info.get("budget_minutes") is not None else "")
        where = (f"On the images themselves at {info.get('train_size', '?')} px ({info['precision']}, {runs} "
                 f"epoch{'s' * (runs != 1)} of {info['seconds_per_epoch']:g} s on {info['device']}{budget}; "
                 + (f"this head reads the features extracted again with the tuned network, "
                    f"{os.path.basename(info['weights'])}), layers of {info['model']}" if info.get("weights")
                    else f"nothing was written or extracted again), layers of {info['model']}"))
        if info.get("kept_probe") and "best_tuned_val_accuracy" in info:
            where += (f" (validation accuracy: the probe {info['probe_val_accuracy']:.4f}, the best tuned epoch "
                      f"{info['best_tuned_val_accuracy']:.4f})")
        return sentence(card, where)

    def export(self, run: str, card: dict, model, out: str) -> dict:
        """The tuned network's weights file, copied to ``out`` after checking it is the one its feature set
        was extracted with (that file's name is the first 12 hex digits of its sha256)."""
        from ..config import sha256_file
        from ..store import files

        info = card["data"]["finetune"]
        if not info.get("weights"):
            raise MmfeatError("fine-tuning did not beat the linear probe on validation, so the head is the probe and "
                              "there is no tuned network to export (--set keep_probe=false keeps the tuned network)")
        src = network_weights(run, info)
        if not os.path.isfile(src):
            raise MmfeatError(f"{info['weights']}: the tuned network of this head is missing (and not in its run)")
        if not sha256_file(src).startswith(os.path.basename(info["weights"]).split(".")[0]):
            raise MmfeatError(f"{src}: the tuned network's bytes changed since training (its sha256 no longer matches)")
        with open(src, "rb") as f:
            files.write_bytes_atomic(files.LOCAL, os.path.abspath(out), f.read())
        path = os.path.abspath(out)
        return {"path": path, "model": info["model"], "tuned_tensors": None, "tuned": info["tuned"],
                "extract_with": f"--set model={info['model']} --set weights={path}"}


def _prepare(job: TrainJob) -> Tuning:
    """The base set's network with a new classifier and what is tuned made trainable (images come later,
    at the resolution the budget allows)."""
    from ..extractors.image.cnn import CNNConfig
    from ..extractors.image.models import load_backbone
    from ..extractors.image.surgery import surgery

    fs, p = job.sets[0], job.params
    fields = set(CNNConfig.__dataclass_fields__)
    base = CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fs.manifest["config"].items()
                        if k in fields} | {"device": job.device, "gpu_resize": False, "compile": False})
    torch.manual_seed(job.cfg.seed)
    backbone = load_backbone(base.model, base.weights)
    adapter = surgery(backbone, base.model)
    fc, original_fc = adapter.swap_classifier(len(job.data.classes))
    tuned = adapter.unfreeze(p.tune_blocks)
    fc.requires_grad_(True)
    model = adapter.model.to(job.device).to(memory_format=torch.channels_last)
    weighting = "balanced" if p.class_weight == "balanced" else "none"
    weight = class_weights(job.data.train.y, len(job.data.classes), weighting, job.device)
    return Tuning(model, fc, adapter, original_fc, tuned, None, nn.CrossEntropyLoss(weight=weight),
                  nn.CrossEntropyLoss(weight=weight, label_smoothing=p.label_smoothing), base,
                  base.image_size or backbone.data.crop)


def _at_size(tuning: Tuning, size: int):
    """The base config at a training resolution (the base set's own when it is that size already)."""
    return tuning.base if size == tuning.base_crop else dataclasses.replace(tuning.base, image_size=size, resize=None)


def _stored_probe(job: TrainJob) -> TrainedHead:
    """The linear head on the set's stored (frozen-network) features, as ``--head linear`` trains it
    (penalty and class weights chosen on validation, refit on train + validation): epoch 0, the head to
    beat, and the head itself when tuning does not beat it."""
    from .config import LinearParams
    from .linear import LinearHead

    p = job.params
    return LinearHead(LinearParams(l2_penalties=p.l2_penalties, class_weight=p.class_weight)).train(job)


def _probe_at_size(job: TrainJob, tuning: Tuning) -> Fit:
    """LP-FT: the classifier starts as the linear probe on the frozen network's features at the training
    resolution (the stored ones may be at another: a probe fitted there would start off)."""
    x, y, xv, yv = tuning.images.features(tuning.model, tuning.adapter)
    return probe_into(tuning.fc, x, y, xv, yv, tuning.loss_fn.weight, job.params.l2_penalties)


def _plan(job: TrainJob, tuning: Tuning, deadline: float | None) -> Plan:
    """The resolution (fitting the images unless train_size is set) and the epochs the budget allows."""
    p, data = job.params, job.data
    size = p.train_size or fitting_size(image_sizes(item_paths(job.sets[0], data.train.ids)), tuning.base_crop)
    batch = training_batch(p.batch_size, len(data.train.y))
    train_mode(tuning.model, p.batch_norm)
    n_train, n_val = len(data.train.y), len(data.val.y)
    probe_pass, extraction_again = n_train + n_val, n_train + n_val + len(data.test.y)
    budget = None if deadline is None else deadline - time.perf_counter()
    return plan_budget(lambda s: time_steps(tuning.model, tuning.train_loss, batch, s), size, n_train, n_val,
                       probe_pass + extraction_again, p.max_epochs, budget)


def train_mode(model: nn.Module, batch_norm: str) -> nn.Module:
    """Training mode, batch-norm statistics frozen unless ``batch_norm=train``."""
    model.train()
    return frozen_batch_norm(model) if batch_norm == "frozen" else model


def selection_score(accuracy: float, loss: float) -> float:
    """Lower is better: validation accuracy first, loss only between equal accuracies. Loss alone would keep
    the probe over a network tuned with label smoothing that is more accurate but less confident."""
    return (1.0 - accuracy) + 1e-4 * min(loss, 10.0)


def _tune(job: TrainJob, tuning: Tuning, plan: Plan, stored: Fit, deadline: float | None):
    """The epochs on the images; returns (stopping, the learning curve, validation accuracy per epoch)."""
    model, fc, images, p = tuning.model, tuning.fc, tuning.images, job.params
    opt = torch.optim.AdamW(layer_rates(tuning.adapter.depth_groups(), list(fc.parameters()),
                                        p.lr * NETWORK_LR_FACTOR, p.layer_decay, p.weight_decay),
                            weight_decay=p.weight_decay)
    schedule = WarmupCosine(opt, max(1, plan.epochs) * len(images.train), len(images.train))
    accuracy = {0: stored.val_accuracy}
    keep, restore = keep_state(model)
    probe_score = selection_score(stored.val_accuracy, stored.val_loss) if p.keep_probe else float("inf")
    # The whole schedule runs (patience does not cut it): the best epochs come as the rate decays to zero.
    stopping = EarlyStopping(plan.epochs + 1, keep, [probe_score])
    losses, timing = {0: stored.val_loss}, {"last": time.perf_counter(), "epoch_s": 0.0}

    def run_epoch(_: int) -> float:
        train_mode(model, p.batch_norm)
        return images.train_epoch(model, opt, tuning.train_loss, schedule)

    def validate() -> list[float]:
        loss, acc = images.evaluate(model, tuning.loss_fn)
        accuracy[len(accuracy)], losses[len(losses)] = acc, loss
        return [selection_score(acc, loss)]

    def out_of_time(epoch: int) -> bool:
        now = time.perf_counter()
        timing["epoch_s"], timing["last"] = now - timing["last"], now
        if deadline is None:
            return False
        more = int((deadline - now - plan.once_s) // max(timing["epoch_s"], 1e-9))
        schedule.shorten(epoch + max(more, 0))
        return more <= 0

    rows = train_epochs(plan.epochs, run_epoch, validate, stopping,
                        lambda e, t, v: f"network fine-tuning: train loss {t:.4f}, validation accuracy "
                                        f"{accuracy[e]:.4f}", log_every_s=0, out_of_time=out_of_time)
    restore()
    return stopping, [(0, float("nan"), losses[0])] + [(e, t, losses[e]) for e, t, _ in rows], accuracy


def save_network(tuning: Tuning, head_dir: str) -> str:
    """The tuned network (its published classifier restored) at ``<head_dir>/networks/<sha12>.pth``:
    content-addressed, so a later run never overwrites the file an earlier run's feature set was extracted
    with."""
    from ..config import sha256_file
    from ..store import files

    tuning.adapter.restore_classifier(tuning.original_fc)
    folder = os.path.join(head_dir, "networks")
    staged = os.path.join(folder, f".pending-{os.getpid()}-{time.monotonic_ns()}.pth")
    with files.staged_output(files.LOCAL, staged, ".pth") as tmp:
        torch.save({n: t.contiguous() for n, t in tuning.model.cpu().state_dict().items()}, tmp)
    path = os.path.join(folder, sha256_file(staged)[:12] + ".pth")
    os.replace(staged, path)
    return path
