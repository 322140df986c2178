"""``network`` (``--head finetune`` on a pooled ``cnn`` set): the network itself fine-tuned on the images.

The pretrained network's last ``tune_blocks`` blocks (all its layers when unset) and a new classifier
train on the images, read again through the extraction's own decode path (the dataset the set is bound
to; resize to the weights' size, then a random crop of the crop size and a random flip per image for
training, the center crop for validation and test). LP-FT as for the tops (tops.py): the classifier starts
at the linear probe fitted on the set's own stored features, pretrained layers learn at lr/30 and the
classifier at lr/10, batch-norm statistics stay frozen, and early stopping keeps the best epoch by
validation loss, the probe (epoch 0) included. On CUDA the forward pass runs in bfloat16 autocast.

When tuning beats the probe, the tuned network is written as cnn weights (``<head>/networks/<sha>.pth``),
the dataset is extracted again with them (a new feature set, through the weights' hash: network_set.py),
and the head is the tuned classifier on that set. When the probe (epoch 0) stays best, nothing is written
or extracted again: the head is the probe on the stored features, and the report says so.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch
from torch import nn

from ..errors import MmfeatError
from .config import FinetuneParams
from .image_batches import TrainingImages
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .network_set import NETWORK_FILE, extract_tuned, kept_probe, network_weights  # noqa: F401
from .solvers import probe_into
from .tops import sentence
from .training import (HEAD_LR_FACTOR, PRETRAINED_LR_FACTOR, EarlyStopping, Fit, class_weights, frozen_batch_norm,
                       keep_state, lp_ft_optimizer, set_threads, train_epochs)

@dataclasses.dataclass
class Tuning:
    """A network being tuned: the model with its new classifier, what is tuned, and how images reach it."""

    model: nn.Module
    fc: nn.Linear
    adapter: object  # extractors.image.surgery.Surgery
    original_fc: dict
    tuned: list[str]
    images: TrainingImages
    loss_fn: nn.Module
    base: object  # the CNNConfig of the base set


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
        tuning = _prepare(job)
        probe = _probe(job, tuning)
        start = time.perf_counter()
        stopping, curve, accuracy = _tune(job, tuning)
        seconds = time.perf_counter() - start
        info = {"mode": "network", "model": tuning.base.model, "tuned": tuning.tuned, "tune_blocks": job.params.tune_blocks,
                "base_feature_set": job.sets[0].name, "base_config_id": job.sets[0].config_id,
                **tuning.images.describe(), "epochs_run": len(curve) - 1,
                "seconds_per_epoch": round(seconds / max(len(curve) - 1, 1), 2),
                "pretrained_lr": job.params.lr * PRETRAINED_LR_FACTOR, "head_lr": job.params.lr * HEAD_LR_FACTOR,
                "probe_l2": probe.l2, "unreadable_skipped": sorted(tuning.images.skipped)}
        fit = Fit(tuning.fc, probe.l2, stopping.losses[0], accuracy[stopping.epochs[0]], stopping.epochs[0], curve)
        if stopping.epochs[0] == 0:
            return kept_probe(job, tuning, fit, info, seconds)
        weights = save_network(tuning, job.head_dir)
        return extract_tuned(job, tuning, fit, dict(info, weights=weights), seconds)

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
        where = (f"On the images themselves ({info['precision']}, {runs} epoch{'s' * (runs != 1)} of "
                 f"{info['seconds_per_epoch']:g} s on {info['device']}; "
                 + (f"this head reads the features extracted again with the tuned network, "
                    f"{os.path.basename(info['weights'])}), layers of {info['model']}" if info.get("weights")
                    else f"nothing was written or extracted again), layers of {info['model']}"))
        return sentence(card, where)

    def export(self, run: str, card: dict, model, out: str) -> dict:
        """The tuned network's weights file, copied to ``out`` after checking it is the one its feature set
        was extracted with (that file's name is the first 12 hex digits of its sha256)."""
        from ..config import sha256_file
        from ..store import files

        info = card["data"]["finetune"]
        if not info.get("weights"):
            raise MmfeatError("fine-tuning kept the linear probe (epoch 0): there is no tuned network to export")
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
    """The base set's network with a new classifier, what is tuned made trainable, and the image loaders."""
    from ..extractors.image.cnn import CNNConfig
    from ..extractors.image.models import load_backbone
    from ..extractors.image.surgery import surgery

    fs = job.sets[0]
    fields = set(CNNConfig.__dataclass_fields__)
    base = CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fs.manifest["config"].items()
                        if k in fields} | {"device": job.device, "gpu_resize": False, "compile": False})
    torch.manual_seed(job.cfg.seed)
    adapter = surgery(load_backbone(base.model, base.weights), base.model)
    fc, original_fc = adapter.swap_classifier(len(job.data.classes))
    tuned = adapter.unfreeze(job.params.tune_blocks)
    fc.requires_grad_(True)
    model = adapter.model.to(job.device).to(memory_format=torch.channels_last)
    weighting = "balanced" if job.params.class_weight == "balanced" else "none"
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(job.data.train.y, len(job.data.classes), weighting, job.device))
    images = TrainingImages(fs, base, job.data, job.params.batch_size, job.cfg.seed, torch.device(job.device))
    return Tuning(model, fc, adapter, original_fc, tuned, images, loss_fn, base)


def _probe(job: TrainJob, tuning: Tuning):
    """LP-FT: the classifier starts as the linear probe on the stored (frozen-network) features."""
    data, device = job.data, job.device
    x, xv = (torch.from_numpy(np.asarray(s.x, np.float32)).to(device) for s in (data.train, data.val))
    return probe_into(tuning.fc, x, torch.from_numpy(data.train.y).to(device), xv,
                      torch.from_numpy(data.val.y).to(device), tuning.loss_fn.weight, job.params.l2_penalties)


def _tune(job: TrainJob, tuning: Tuning):
    """The epochs on the images; returns (stopping, the learning curve, validation accuracy per epoch)."""
    model, fc, images = tuning.model, tuning.fc, tuning.images
    head = {id(p) for p in fc.parameters()}
    pretrained = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    opt = lp_ft_optimizer(pretrained, list(fc.parameters()), job.params.lr, job.params.weight_decay)
    val_loss, val_acc = images.evaluate(model, tuning.loss_fn)
    accuracy = {0: val_acc}
    keep, restore = keep_state(model)
    stopping = EarlyStopping(job.params.patience, keep, [val_loss])  # epoch 0: the probe on the pretrained network

    def run_epoch(_: int) -> float:
        frozen_batch_norm(model.train())
        return images.train_epoch(model, opt, tuning.loss_fn)

    def validate() -> list[float]:
        loss, acc = images.evaluate(model, tuning.loss_fn)
        accuracy[len(accuracy)] = acc
        return [loss]

    rows = train_epochs(job.params.max_epochs, run_epoch, validate, stopping,
                        lambda e, t, v: f"network fine-tuning: train loss {t:.4f}, validation loss {v[0]:.4f}",
                        log_every_s=0)
    restore()
    return stopping, [(0, float("nan"), val_loss)] + [(e, t, v[0]) for e, t, v in rows], accuracy


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
