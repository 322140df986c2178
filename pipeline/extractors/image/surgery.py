"""What fine-tuning asks of an image backbone, answered per model family: the tunable blocks, the top above a
block, the classifier swap, the tuned top merged back into the full weights. Heads ask for these
capabilities (timm's uniform surface, in spirit) and never for a model's private attributes; a second
family with blocks (timm's ``forward_intermediates``, a torchvision ResNet's stages) is another adapter here.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import MmfeatError
from .models import LITE_MODELS, Backbone, last_linear


class Surgery:
    """Any model: every layer tunable, the last Linear swapped for a new classifier."""

    def __init__(self, backbone: Backbone, name: str):
        self.model, self.name = backbone.model, name

    def block_count(self) -> int:
        raise MmfeatError(f"tune_blocks counts EfficientNet-Lite blocks; {self.name} tunes all layers (unset tune_blocks)")

    def unfreeze(self, last_blocks: int | None) -> list[str]:
        """Make the last ``last_blocks`` blocks (all layers when None) trainable; their names."""
        if last_blocks is not None:
            self.block_count()
        self.model.requires_grad_(True)
        return ["all layers"]

    def depth_groups(self) -> list[list[nn.Parameter]]:
        """The model's trainable parameters (classifier aside) from the input up, in groups that learn at one
        rate each under layer-wise learning-rate decay: one group for a model without blocks."""
        fc = {id(p) for p in self.classifier()[0].get_submodule(self.classifier()[1]).parameters()}
        return [[p for p in self.model.parameters() if p.requires_grad and id(p) not in fc]]

    def block_index(self, module: str) -> int:
        raise MmfeatError(f"tops above a stored block are rebuilt for EfficientNet-Lite models; got model={self.name!r}")

    def top_above(self, block: int, n_classes: int, dropout: float) -> nn.Module:
        raise MmfeatError(f"tops above a stored block are rebuilt for EfficientNet-Lite models; got model={self.name!r}")

    def classifier(self) -> tuple[nn.Module, str]:
        """The module holding the layer whose input the ``penultimate`` features are, and its attribute."""
        parent, _, attr = (last_linear(self.model) or "").rpartition(".")
        return (self.model.get_submodule(parent) if parent else self.model), attr

    def swap_classifier(self, n_classes: int) -> tuple[nn.Linear, dict]:
        """Put a new ``n_classes`` classifier in place; returns it and the original's weights."""
        parent, attr = self.classifier()
        original = getattr(parent, attr)
        fc = nn.Linear(original.in_features, n_classes)
        setattr(parent, attr, fc)
        return fc, {n: t.clone() for n, t in original.state_dict().items()}

    def restore_classifier(self, weights: dict) -> None:
        """The published classifier back (a weights file fits the architecture as published)."""
        parent, attr = self.classifier()
        restored = nn.Linear(getattr(parent, attr).in_features, weights["weight"].shape[0])
        restored.load_state_dict(weights)
        setattr(parent, attr, restored)

    def merge_top(self, top_state: dict, block: int) -> dict:
        raise MmfeatError(f"{self.name}: no top to merge")


class LiteSurgery(Surgery):
    """EfficientNet-Lite: blocks ``_blocks.K``, then the head convolution, its batch norm and activation."""

    def block_count(self) -> int:
        return len(self.model._blocks)

    def unfreeze(self, last_blocks: int | None) -> list[str]:
        if last_blocks is None:
            return super().unfreeze(None)
        total = self.block_count()
        if not 1 <= last_blocks <= total:
            raise MmfeatError(f"tune_blocks must be 1..{total} for {self.name}")
        for module in [*self.model._blocks[total - last_blocks:], self.model._conv_head, self.model._bn1]:
            module.requires_grad_(True)
        return [f"_blocks.{i}" for i in range(total - last_blocks, total)] + ["_conv_head", "_bn1"]

    def depth_groups(self) -> list[list[nn.Parameter]]:
        m = self.model
        tops = [p for name, p in m.named_parameters() if not name.startswith(("_blocks.", "_fc."))
                and not name.startswith(("_conv_stem", "_bn0"))]
        stem = [p for name, p in m.named_parameters() if name.startswith(("_conv_stem", "_bn0"))]
        groups = [stem, *[list(b.parameters()) for b in m._blocks], tops]
        return [[p for p in g if p.requires_grad] for g in groups]

    def block_index(self, module: str) -> int:
        head, _, index = (module or "").partition(".")
        if head != "_blocks" or not index.isdigit():
            raise MmfeatError(f"head=finetune rebuilds EfficientNet-Lite tops above a block (_blocks.K); got "
                              f"model={self.name!r} activations={module!r}")
        if int(index) >= self.block_count():
            raise MmfeatError(f"{module} is past the last block")
        return int(index)

    def top_above(self, block: int, n_classes: int, dropout: float) -> nn.Module:
        self.model.requires_grad_(True)
        return LiteTop(self.model, block + 1, n_classes, dropout)

    def tuned_names(self, block: int) -> list[str]:
        return [f"_blocks.{i}" for i in range(block + 1, self.block_count())] + ["_conv_head", "_bn1"]

    def merge_top(self, top_state: dict, block: int) -> dict:
        """The backbone's weights with a tuned :class:`LiteTop`'s tensors in place (its classifier left out)."""
        state, start = self.model.state_dict(), block + 1
        for name, tensor in top_state.items():
            head, _, rest = name.partition(".")
            if head == "blocks":
                index, _, rest = rest.partition(".")
                key = f"_blocks.{start + int(index)}.{rest}"
            elif head in ("conv_head", "bn1"):
                key = f"_{head}.{rest}"
            else:
                continue
            if key not in state or state[key].shape != tensor.shape:
                raise MmfeatError(f"{name} does not fit {self.name}'s {key}")
            state[key] = tensor.clone()
        return state


class LiteTop(nn.Module):
    """EfficientNet-Lite blocks ``start``.. + head conv + BN + activation, pooled, then a new Linear."""

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


def surgery(backbone: Backbone, name: str) -> Surgery:
    """The adapter of a loaded backbone (``name`` as in CNNConfig.model)."""
    return LiteSurgery(backbone, name) if name in LITE_MODELS else Surgery(backbone, name)
