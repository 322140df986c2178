"""The ``finetune`` head: the pretrained network's top, rebuilt above the stored activations with its
pretrained weights, plus a new classifier, trained together on the activations (pretrain -> fine-tune
without running the lower network again).

A feature set of activations (``cnn`` with ``activations=_blocks.K``) fixes what is tuned: every layer
above block K (the later blocks, the head convolution and its batch norm). LP-FT (Kumar et al., 2022:
fine-tuning from a random classifier distorts the pretrained features): the classifier starts as the
linear probe (L-BFGS on the frozen top's pooled features, penalty chosen on validation), then everything
trains at small rates (pretrained layers lr/30, classifier lr/10); batch-norm statistics stay frozen
(small batches would corrupt them); feature maps are flipped left-right at random; early stopping keeps
the best epoch by validation loss, the probe itself (epoch 0) included, so tuning never ends below it.
Measured without the probe start (random classifier, lr/10 and lr): 1-4 points under the frozen head.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..errors import MmfeatError
from ..extractors.runtime import resolve_device
from ..progress import log
from .model import EarlyStopping, Fit

PRETRAINED_LR_FACTOR, HEAD_LR_FACTOR = 1 / 30, 1 / 10


class EfficientNetTop(nn.Module):
    """EfficientNet(-Lite) blocks ``start``.. + head conv + BN + activation, pooled, then a new Linear."""

    def __init__(self, model: nn.Module, start: int, n_classes: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(model._blocks[start:])
        self.conv_head, self.bn1, self.act = model._conv_head, model._bn1, model._swish
        self.start, self.total = start, len(model._blocks)
        self.drop_connect = model._global_params.drop_connect_rate or 0.0
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.conv_head.out_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pooled(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier sees."""
        for i, block in enumerate(self.blocks):  # stochastic depth as in pretraining, scaled by depth
            x = block(x, drop_connect_rate=self.drop_connect * (self.start + i) / self.total or None)
        return self.act(self.bn1(self.conv_head(x))).mean(dim=(2, 3))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("fc.")]

    def train(self, mode: bool = True) -> "EfficientNetTop":
        return frozen_batch_norm(super().train(mode))


def frozen_batch_norm(model: nn.Module) -> nn.Module:
    """Batch-norm layers back in eval mode: their pretrained statistics stay (small batches would corrupt
    them; measured on the 32-px photos, network tuned whole: 88.0% frozen, 86.0% updated); their affine
    weights still learn."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def top_for(provenance: dict, n_classes: int, dropout: float) -> tuple[EfficientNetTop, list[str]]:
    """The pretrained top above a set's activations, and the names of the tuned layers."""
    from ..extractors.image.models import LITE_MODELS, load_backbone

    config = provenance.get("config", {})
    module, model_name = config.get("activations"), config.get("model")
    if provenance.get("extractor") != "cnn" or not module:
        raise MmfeatError("head=finetune trains on activations: extract with --extractor cnn --set activations=_blocks.K")
    if model_name not in LITE_MODELS or not module.startswith("_blocks."):
        raise MmfeatError(f"head=finetune rebuilds EfficientNet-Lite tops above a block (_blocks.K); got "
                          f"model={model_name!r} activations={module!r}")
    model = load_backbone(model_name, config.get("weights"))
    model.model.requires_grad_(True)
    start = int(module.split(".")[1]) + 1
    if start >= len(model.model._blocks) + 1:
        raise MmfeatError(f"{module} is past the last block")
    top = EfficientNetTop(model.model, start, n_classes, dropout)
    tuned = [f"_blocks.{i}" for i in range(start, len(model.model._blocks))] + ["_conv_head", "_bn1"]
    return top, tuned


def train_finetune(sets, data, cfg, head_dir: str) -> dict:
    """Train the top + classifier on the activation set; the card says which layers were tuned."""
    from .calibration import fit_temperature
    from .train import class_weights, finish_card

    if len(sets) != 1 or not (sets[0].tensor_shape or sets[0].manifest.get("config", {}).get("frames_layer") is not None):
        raise MmfeatError("head=finetune takes one feature set: cnn activations (--set activations=_blocks.K), "
                          "pooled cnn features (the network is tuned on the images), or bert token states of a "
                          "layer (--set frames=true --set frames_layer=K)")
    fs = sets[0]
    shape = fs.tensor_shape
    if cfg.tune_blocks is not None:
        raise MmfeatError("tune_blocks is for the network tuned on the images (a pooled cnn set); on stored "
                          "activations or token states, the layers above the stored one are tuned: store a lower one")
    device = str(resolve_device(cfg.device))
    as_input = (lambda x: torch.from_numpy(x.reshape(-1, *shape))) if shape else torch.from_numpy  # noqa: E731
    x, xv = as_input(data.train.x), as_input(data.val.x).to(device)
    y, yv = torch.from_numpy(data.train.y), torch.from_numpy(data.val.y).to(device)
    k = len(data.classes)
    torch.manual_seed(cfg.seed)
    if shape:
        model, tuned = top_for(fs.manifest, k, cfg.dropout)
    else:
        from .text_top import text_top_for

        model, tuned = text_top_for(fs.manifest, k, cfg.dropout)
    model.to(device)
    weighting = "none" if cfg.class_weight != "balanced" else "balanced"
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(data.train.y, k, weighting, device))
    probe_l2 = _linear_probe(model, x, y, xv, yv, k, loss_fn.weight, cfg.l2_penalties, device)
    opt = torch.optim.AdamW([{"params": model.pretrained_parameters(), "lr": cfg.lr * PRETRAINED_LR_FACTOR},
                             {"params": model.fc.parameters(), "lr": cfg.lr * HEAD_LR_FACTOR}],
                            weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = max(1, min(cfg.batch_size, 64, -(-len(y) // 8)))
    stopping = EarlyStopping(model, cfg.patience, _evaluate(model, xv, yv, loss_fn))  # epoch 0: the probe
    curve = [(0, float("nan"), stopping.loss)]
    start = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order, total = torch.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            xb = x[idx].to(device)
            if shape:  # feature maps flip left-right as images do; token states have no such symmetry
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb[flip.to(device)] = xb[flip.to(device)].flip(-1)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), y[idx].to(device))
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_loss = _evaluate(model, xv, yv, loss_fn)
        curve.append((epoch, total / len(y), val_loss))
        log.info("finetune epoch %d: train loss %.4f, validation loss %.4f", epoch, total / len(y), val_loss)
        if stopping.update(model, epoch, val_loss):
            break
    model.load_state_dict(stopping.best)
    model.eval()
    with torch.no_grad():
        val_logits = _logits(model, xv)
        val_acc = float((val_logits.argmax(1) == yv).float().mean())
        temperature = fit_temperature(val_logits, yv)

    fit = Fit(model, 0.0, stopping.loss, val_acc, stopping.epoch, curve, weighting)
    seconds = time.perf_counter() - start
    model.cpu()
    logits = _logits(model, as_input(data.test.x))
    config = fs.manifest["config"]
    layer = config.get("frames_layer")
    data.report["finetune"] = {"tuned": tuned, "model": config["model"], "shape": list(shape or ()),
                               "activations": config["activations"] if shape else f"encoder.layer.{layer}",
                               **({} if shape else {"frames_layer": layer}),
                               "pretrained_lr": cfg.lr * PRETRAINED_LR_FACTOR, "head_lr": cfg.lr * HEAD_LR_FACTOR,
                               "probe_l2": probe_l2}
    empty = np.zeros(0, np.float32)
    dim = fs.dim if shape else int(data.train.x.shape[-1])  # token states: the padded width, mask included
    return finish_card(sets, data, cfg, "adamw", [], dim, fit, [fit], temperature, model, None,
                       seconds, empty, empty, logits, device, head_dir, None)


def load_top(card: dict) -> nn.Module:
    """The card's top (pretrained architecture from the weights package), ready for its tuned tensors."""
    info = card["data"]["finetune"]
    dropout = float(card["config"].get("dropout", 0.0))
    if info.get("frames_layer") is not None:
        from .text_top import text_top_for

        config = {"model": info["model"], "frames": True, "frames_layer": int(info["frames_layer"])}
        return text_top_for({"extractor": "bert", "config": config}, len(card["classes"]), dropout)[0]
    provenance = {"extractor": "cnn", "config": {"activations": info["activations"], "model": info["model"]}}
    return top_for(provenance, len(card["classes"]), dropout)[0]


def predict_top(model: nn.Module, x: np.ndarray, shape: list[int], temperature: float) -> np.ndarray:
    """Class probabilities through a fine-tuned top: activation rows (n, C*H*W) reshaped to ``shape``, or
    padded token states (n, T, d + 1) as they are (``shape`` empty)."""
    x = np.ascontiguousarray(x)
    logits = _logits(model, torch.from_numpy(x.reshape(-1, *shape) if shape else x))
    return torch.softmax(logits / temperature, 1).numpy()


def _linear_probe(model: EfficientNetTop, x, y, xv, yv, k: int, weight, l2s, device: str) -> float:
    """Start the classifier at the linear probe: exact L-BFGS on the frozen top's pooled features (the
    penalty chosen on validation); returns the penalty."""
    from .model import fit_linear_lbfgs

    def pooled(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.pooled(t[i:i + 256].to(device)) for i in range(0, len(t), 256)])

    model.eval()
    with torch.no_grad():
        f, fv = pooled(x), pooled(xv)
    fits = fit_linear_lbfgs(f, y.to(device), fv, yv, k, weight, l2s)
    best = min(fits, key=lambda fit: (-fit.val_accuracy, fit.val_loss))
    with torch.no_grad():
        model.fc.weight.copy_(best.model.weight)
        model.fc.bias.copy_(best.model.bias)
    return best.l2


def _logits(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(out).cpu() if out else torch.zeros(0, model.fc.out_features)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    return float(loss_fn(_logits(model, x).to(y.device), y)) if len(y) else float("inf")


def export_weights(head_dir: str, out: str, store=None) -> dict:
    """The backbone with a finetune head's tuned layers in place, as a state_dict file (tensors only,
    loadable with ``torch.load(weights_only=True)``): ``extract --set model=M --set weights=OUT`` then
    computes features from the tuned network (a new feature set id, through the weights' hash)."""
    import os

    from ..extractors.image.models import load_backbone
    from .artifacts import load_head, resolve_head_dir
    from .validate import tunes_network

    run = resolve_head_dir(head_dir, store)
    model, card = load_head(run)
    if card["head"] != "finetune":
        raise MmfeatError(f"{head_dir}: a {card['head']} head has no network layers to export (head=finetune has)")
    info = card["data"]["finetune"]
    if tunes_network(card):  # the whole tuned network is already a weights file
        return _copy_network(run, info, out)
    if info.get("frames_layer") is not None:
        from .text_top import export_encoder

        return export_encoder(model, info, out)
    backbone = load_backbone(info["model"], None).model
    state = backbone.state_dict()
    start = int(info["activations"].split(".")[1]) + 1
    renamed = 0
    for name, tensor in model.state_dict().items():
        head, _, rest = name.partition(".")
        if head == "blocks":
            index, _, rest = rest.partition(".")
            key = f"_blocks.{start + int(index)}.{rest}"
        elif head in ("conv_head", "bn1"):
            key = f"_{head}.{rest}"
        else:
            continue  # the new classifier is not part of the backbone
        if key not in state or state[key].shape != tensor.shape:
            raise MmfeatError(f"{name} does not fit {info['model']}'s {key}")
        state[key] = tensor.clone()
        renamed += 1
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, out)
    return {"path": os.path.abspath(out), "model": info["model"], "tuned_tensors": renamed, "tuned": info["tuned"]}


def _copy_network(run: str, info: dict, out: str) -> dict:
    """A network-tuned head's weights file, copied to ``out`` after checking it is the one its
    feature set was extracted with (that file's name is the first 12 hex digits of its sha256)."""
    import os

    from ..config import sha256_file
    from ..store import files
    from .network import network_weights

    src = network_weights(run, info)
    if not os.path.isfile(src):
        raise MmfeatError(f"{info['weights']}: the tuned network of this head is missing (and not in its run)")
    if not sha256_file(src).startswith(os.path.basename(info["weights"]).split(".")[0]):
        raise MmfeatError(f"{src}: the tuned network's bytes changed since training (its sha256 no longer matches)")
    with open(src, "rb") as f:
        files.write_bytes_atomic(files.LOCAL, os.path.abspath(out), f.read())
    return {"path": os.path.abspath(out), "model": info["model"], "tuned_tensors": None, "tuned": info["tuned"]}
