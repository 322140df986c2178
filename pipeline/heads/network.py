"""Network fine-tuning on raw images: the ``finetune`` head on a pooled ``cnn`` feature set.

The pretrained network's last ``tune_blocks`` blocks (all its layers when unset) and a new classifier
train on the images themselves, read again through the extraction's own decode path (the dataset the
set is bound to; resize to the weights' size, then a random crop of the crop size and a random flip
per image for training, the center crop for validation and test). LP-FT as for tops from stored
activations (finetune.py): the classifier starts at the linear probe fitted on the set's own stored
features, pretrained layers learn at lr/30 and the classifier at lr/10, batch-norm statistics stay
frozen, and early stopping keeps the best epoch by validation loss, the probe (epoch 0) included.
On CUDA the forward pass runs in bfloat16 autocast (mixed precision); on the CPU in float32.

The result is a tuned network, written as cnn weights (``<head>/networks/<sha>.pth``, tensors only),
and its classifier. The dataset is then extracted again with those weights (a new feature set, through
the weights' hash), and the head is the classifier on that set: its test metrics come from the features
``predict`` will see, and ``predict`` / ``export`` work as for any head.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from ..errors import MmfeatError
from ..progress import log
from .finetune import HEAD_LR_FACTOR, PRETRAINED_LR_FACTOR, frozen_batch_norm
from .image_batches import Images, TrainingDecode, collate, random_crops
from .model import EarlyStopping, Fit


def _classifier(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the layer whose input the ``penultimate`` features are, and its attribute name."""
    from ..extractors.image.models import last_linear

    parent, _, attr = last_linear(model).rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


def _trainable(model: nn.Module, model_name: str, tune_blocks: int | None) -> list[str]:
    """Unfreeze what is tuned; returns its names. EfficientNet-Lite: the last K blocks, the head conv and
    its batch norm; any model: all layers when ``tune_blocks`` is None."""
    from ..extractors.image.models import LITE_MODELS

    if tune_blocks is None:
        model.requires_grad_(True)
        return ["all layers"]
    if model_name not in LITE_MODELS:
        raise MmfeatError(f"tune_blocks counts EfficientNet-Lite blocks; {model_name} tunes all layers (unset tune_blocks)")
    total = len(model._blocks)
    if not 1 <= tune_blocks <= total:
        raise MmfeatError(f"tune_blocks must be 1..{total} for {model_name}")
    for module in [*model._blocks[total - tune_blocks:], model._conv_head, model._bn1]:
        module.requires_grad_(True)
    return [f"_blocks.{i}" for i in range(total - tune_blocks, total)] + ["_conv_head", "_bn1"]


def train_network(fs, data, cfg, head_dir: str, store) -> dict:
    """Fine-tune ``fs``'s network on its dataset's images; extract again with the tuned weights; write
    the head (the tuned classifier on the new set). ``store``: the FeatureStore holding ``fs``."""
    from ..extractors.image.cnn import CNNConfig, CNNExtractor
    from ..extractors.image.models import load_backbone
    from ..extractors.runtime import autocast, loader_context, resolve_device
    from .model import fit_linear_lbfgs
    from .train import class_weights

    config = fs.manifest["config"]
    if config.get("activations") or tuple(config.get("layers", ())) != ("penultimate",) or config.get("flip_tta"):
        raise MmfeatError("network fine-tuning starts from a cnn set of penultimate features (no activations, "
                          "layers or flip_tta)")
    device = resolve_device(cfg.device)
    fields = set(CNNConfig.__dataclass_fields__)
    base = CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields} |
                     {"device": str(device), "gpu_resize": False, "compile": False})
    ext = CNNExtractor(base)  # the extraction's geometry, normalization and decoders
    binding = _binding(fs)
    source = binding["source"]
    paths = _paths(fs, source, np.concatenate([data.train.ids, data.val.ids]))
    k = len(data.classes)
    torch.manual_seed(cfg.seed)
    model = load_backbone(base.model, base.weights).model
    parent, attr = _classifier(model)
    original_fc = {n: t.clone() for n, t in getattr(parent, attr).state_dict().items()}
    fc = nn.Linear(getattr(parent, attr).in_features, k)
    setattr(parent, attr, fc)
    tuned = _trainable(model, base.model, cfg.tune_blocks)
    fc.requires_grad_(True)
    model.to(device).to(memory_format=torch.channels_last)
    weighting = "balanced" if cfg.class_weight == "balanced" else "none"
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(data.train.y, k, weighting, str(device)))
    # LP-FT: the classifier starts as the linear probe on the stored (frozen-network) features.
    x, xv = (torch.from_numpy(np.asarray(s.x, np.float32)).to(device) for s in (data.train, data.val))
    probe = min(fit_linear_lbfgs(x, torch.from_numpy(data.train.y).to(device), xv, torch.from_numpy(data.val.y).to(device),
                                 k, loss_fn.weight, cfg.l2_penalties), key=lambda f: (-f.val_accuracy, f.val_loss))
    fc.load_state_dict(probe.model.state_dict())
    head_params = {id(p) for p in fc.parameters()}
    pretrained = [p for p in model.parameters() if p.requires_grad and id(p) not in head_params]
    opt = torch.optim.AdamW([{"params": pretrained, "lr": cfg.lr * PRETRAINED_LR_FACTOR},
                             {"params": fc.parameters(), "lr": cfg.lr * HEAD_LR_FACTOR}], weight_decay=cfg.weight_decay)
    batch = max(1, min(cfg.batch_size, 32, -(-len(data.train.y) // 4)))
    workers = ext.decode_workers(len(data.train.y))
    common = dict(collate_fn=collate, num_workers=workers, persistent_workers=workers > 0,
                  multiprocessing_context=loader_context() if workers else None, pin_memory=device.type == "cuda")
    square = ext.decoder("path").func
    train_decode = TrainingDecode(square, ext.resize, ext.resize, ext.interpolation)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = torch.utils.data.DataLoader(Images(paths[:len(data.train.y)], data.train.y, train_decode),
                                               batch_size=batch, shuffle=True,
                                               generator=torch.Generator().manual_seed(cfg.seed), **common)
    val_loader = torch.utils.data.DataLoader(Images(paths[len(data.train.y):], data.val.y, ext.decoder("path")),
                                             batch_size=batch, **common)
    normalize = lambda u8: ((u8.to(device, non_blocking=True).float() - ext.mean) / ext.std).contiguous(  # noqa: E731
        memory_format=torch.channels_last)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    skipped: set[str] = set()

    def evaluate() -> tuple[float, float]:
        model.eval()
        total = correct = n = 0.0
        with torch.no_grad(), autocast(device, dtype):
            for images, labels, bad in val_loader:
                _count(skipped, bad)
                if images is None:
                    continue
                logits = model(normalize(images)).float()
                labels = labels.to(device)
                total += float(loss_fn(logits, labels)) * len(labels)
                correct += float((logits.argmax(1) == labels).sum())
                n += len(labels)
        return (total / n, correct / n) if n else (float("inf"), 0.0)

    val_loss, val_acc = evaluate()
    stopping = EarlyStopping(model, cfg.patience, val_loss)  # epoch 0: the probe on the pretrained network
    curve, accuracy = [(0, float("nan"), val_loss)], {0: val_acc}
    start = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        frozen_batch_norm(model.train())
        total = n = 0.0
        for images, labels, bad in train_loader:
            _count(skipped, bad)
            if images is None:
                continue
            with autocast(device, dtype):
                logits = model(normalize(random_crops(images, ext.crop, gen)))
            loss = loss_fn(logits.float(), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(labels), n + len(labels)
        val_loss, accuracy[epoch] = evaluate()
        curve.append((epoch, total / max(n, 1), val_loss))
        log.info("network fine-tuning epoch %d: train loss %.4f, validation loss %.4f (%.0f s so far)",
                 epoch, total / max(n, 1), val_loss, time.perf_counter() - start)
        if stopping.update(model, epoch, val_loss):
            break
    seconds = time.perf_counter() - start
    model.load_state_dict(stopping.best)
    head = nn.Linear(fc.in_features, k)
    head.load_state_dict(fc.state_dict())
    setattr(parent, attr, nn.Linear(fc.in_features, original_fc["weight"].shape[0]))
    getattr(parent, attr).load_state_dict(original_fc)  # the weights file fits the architecture as published
    weights = _save_network(model.cpu(), head_dir)
    del model, opt, train_loader, val_loader
    fit = Fit(head, probe.l2, stopping.loss, accuracy[stopping.epoch], stopping.epoch, curve)
    info = {"mode": "network", "model": base.model, "tuned": tuned, "tune_blocks": cfg.tune_blocks,
            "weights": weights, "base_feature_set": fs.name, "base_config_id": fs.config_id,
            "precision": str(dtype).replace("torch.", ""), "device": str(device), "batch_size": batch,
            "epochs_run": len(curve) - 1, "seconds_per_epoch": round(seconds / max(len(curve) - 1, 1), 2),
            "pretrained_lr": cfg.lr * PRETRAINED_LR_FACTOR, "head_lr": cfg.lr * HEAD_LR_FACTOR, "probe_l2": probe.l2,
            "unreadable_skipped": sorted(skipped)}
    return _finish(fs, data, cfg, head_dir, store, binding, base, weights, fit, info, seconds, str(device))


def _count(skipped: set[str], reasons: list[str]) -> None:
    for reason in reasons:
        if reason not in skipped:
            log.warning("network fine-tuning skips an unreadable image (%s)", reason)
        skipped.add(reason)


def _binding(fs) -> dict:
    """The dataset's binding: its source, and how the source was read (``current.read``)."""
    binding = fs.items.binding()
    if not binding:
        raise MmfeatError(f"{fs.name}: the dataset has no bound source; network fine-tuning reads its images again")
    return binding


def _paths(fs, source: str, ids: np.ndarray) -> list[str]:
    """Files of the given item ids, under the root the dataset is bound to (checked as at extraction)."""
    from ..inputs import Dataset, resolve_paths, source_root

    try:
        root = source_root(source)
    except MmfeatError as exc:
        raise MmfeatError(f"the images of {fs.name} are not readable where the dataset was bound ({exc}); "
                          "network fine-tuning reads them again") from None
    items = fs.items.current()
    rel = pc.take(items["source"], pc.index_in(pa.array(ids.astype(str)), value_set=items["id"])).to_pylist()
    paths, bad = resolve_paths(Dataset(fs.manifest["dataset"], root, items, "path"), rel)
    if bad:
        first = next(iter(bad.values()))
        raise MmfeatError(f"{len(bad)} stored item(s) have no usable path any more (e.g. {first.reason}: {first}); "
                          "re-extract first")
    return paths


def _save_network(model: nn.Module, head_dir: str) -> str:
    """The tuned network's state_dict at ``<head_dir>/networks/<sha12>.pth`` (content-addressed: a
    later run never overwrites the file an earlier run's feature set was extracted with)."""
    import uuid

    from ..config import sha256_file

    folder = os.path.join(head_dir, "networks")
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{uuid.uuid4().hex}.tmp")
    torch.save({n: t.contiguous() for n, t in model.state_dict().items()}, tmp)
    path = os.path.join(folder, sha256_file(tmp)[:12] + ".pth")
    os.replace(tmp, path)
    return path


def _finish(fs, data, cfg, head_dir, store, binding, base, weights, fit, info, seconds, device) -> dict:
    """Extract the dataset with the tuned weights; the head is the tuned classifier on that set."""
    import dataclasses

    from ..config import identity
    from ..extract import extract
    from .calibration import fit_temperature
    from .data import joined_table, load_head_data
    from .train import finish_card

    overrides = identity(base) | {"weights": weights}
    read = binding.get("current", {}).get("read", {})  # as the items were read: labels kept
    summary = extract(binding["source"], "image", "cnn", overrides, dataset=fs.manifest["dataset"], store=store.uri, progress=False,
                      allow_absolute=bool(read.get("allow_absolute")), label_from_name=read.get("label_from_name"),
                      limit=read.get("limit"))
    tuned = store.resolve(summary["feature_set"])
    table, x, report = joined_table([tuned], cfg.missing)
    # The base set's splits, as they were trained and validated on (a random split drawn again over the
    # items that still decode could move an item the network trained on into the test split).
    parts = [(part, getattr(data, part).ids) for part in ("train", "val", "test")]
    known = pa.array(np.concatenate([ids for _, ids in parts]).astype(str))
    names = pa.array(np.repeat([p for p, _ in parts], [len(ids) for _, ids in parts]))
    where = pc.index_in(table["id"], value_set=known)
    table = table.set_column(table.schema.get_field_index("split"), "split", pc.take(names, where))
    tuned_data = load_head_data((table, x, report), data.report["label"], cfg.seed, cfg.val_fraction,
                                cfg.test_fraction, cfg.group)
    for part in ("train", "val", "test"):  # items that fail to decode now are rejects there, never moved
        before, after = getattr(data, part).ids, getattr(tuned_data, part).ids
        if not np.isin(after, before).all():
            raise MmfeatError(f"the tuned set's {part} split holds items the base set's {part} split did not: "
                              "the test metrics would not be held out")
        if len(after) < len(before):
            info.setdefault("missing_from_tuned_set", {})[part] = int(len(before) - len(after))
    head = fit.model.eval()
    with torch.no_grad():
        val_logits = head(torch.from_numpy(np.asarray(tuned_data.val.x, np.float32)))
        temperature = fit_temperature(val_logits, torch.from_numpy(tuned_data.val.y))
        logits = head(torch.from_numpy(np.asarray(tuned_data.test.x, np.float32)))
    tuned_data.report["finetune"] = info
    dim = tuned.dim
    fit = dataclasses.replace(fit, val_accuracy=float((val_logits.argmax(1).numpy() == tuned_data.val.y).mean()))
    # The run carries its network too (NETWORK_FILE): a head published to an object store, or copied to
    # another machine, still predicts raw inputs and exports without <head>/networks.
    return finish_card([tuned], tuned_data, cfg, "adamw", [], dim, fit, [fit], temperature, head, None, seconds,
                       np.zeros(dim, np.float32), np.ones(dim, np.float32), logits, device, head_dir, None,
                       carried={NETWORK_FILE: weights})


NETWORK_FILE = "network.pth"


def network_weights(run: str, info: dict) -> str:
    """The tuned network of a network-tuned head's run: where it was written, else the run's own copy."""
    return info["weights"] if os.path.isfile(info["weights"]) else os.path.join(run, NETWORK_FILE)
