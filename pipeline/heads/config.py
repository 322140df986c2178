"""The settings every head kind shares (``HeadConfig``) and the parameter groups kinds compose their own
params from (a kind's ``params_type``). Each key's one-line doc sits beside it: ``mmfeat describe head``
and docs/heads.md are rendered from these fields."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..config import check_choice, option
from ..errors import UnknownName

# sklearn's C = 1/(l2 n); the sweep is chosen on validation.
DEFAULT_L2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Settings of every head: which kind, how the data is split, where it trains."""

    head: str = option("linear", "the head kind (mmfeat describe head lists them) or a family (finetune)")
    seed: int = option(0, "split and initialization seed")
    val_fraction: float = option(0.15, "validation share of items without a split (assigned once per item)")
    test_fraction: float = option(0.2, "test share of items without a split (assigned once per item)")
    missing: str = option("drop", "fusion: drop ids missing from some feature set, or error")
    group: str | None = option(
        None, "a manifest column (speaker, patient) whose values never straddle train/val/test")
    device: str = option("auto", "auto, cpu or cuda")
    threads: int | None = option(
        None, "torch threads while training (default: as torch is set: OMP_NUM_THREADS, torch.set_num_threads)")
    sklearn_baseline: bool | None = option(
        None, "fit scikit-learn's LogisticRegression beside the head (default: up to 5M training values)")
    memory_gb: float = option(4.0, "a linear head on one set whose features exceed this trains streamed from scratch files")
    copies_in_one_split: bool = option(
        False, "keep near-copies (an edited text, a resized photo: pipeline/nearcopy.py) in one split, as --group does; "
        "copies a split column put apart join the most held-out of their splits")

    def __post_init__(self):
        check_choice("missing", self.missing, ("drop", "error"))
        check_choice("device", self.device.split(":")[0], ("auto", "cpu", "cuda"))
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ValueError("val_fraction and test_fraction must be in (0, 0.5)")
        if self.memory_gb <= 0:
            raise ValueError("memory_gb must be > 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")


@dataclasses.dataclass(frozen=True)
class SweepParams:
    """A penalty sweep chosen on validation, with or without balanced class weights."""

    l2_penalties: tuple[float, ...] = option(DEFAULT_L2, "the L2 sweep, chosen on validation (sklearn's C = 1/(l2 n))")
    class_weight: str = option(
        "auto", "auto (balanced and none both in the validation sweep), balanced, or none")

    def __post_init__(self):
        check_choice("class_weight", self.class_weight, ("auto", "balanced", "none"))
        if not self.l2_penalties or min(self.l2_penalties) < 0:
            raise ValueError("l2_penalties must be a non-empty list of values >= 0")


@dataclasses.dataclass(frozen=True)
class AdamWParams(SweepParams):
    """Mini-batch AdamW with early stopping on validation loss."""

    lr: float = option(3e-3, "AdamW learning rate (finetune: the classifier's a tenth of it and pretrained layers a "
                             "thirtieth; the network on the images: the classifier's a third, layer_decay per block below)")
    max_epochs: int = option(300, "AdamW epochs at most")
    patience: int = option(10, "epochs without a better validation loss before stopping (the network on the images "
                               "runs its whole cosine schedule)")
    batch_size: int = option(1024, "AdamW mini-batch")
    weight_decay: float = option(1e-4, "AdamW weight decay")

    def __post_init__(self):
        super().__post_init__()
        if self.lr <= 0 or self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1 or self.weight_decay < 0:
            raise ValueError("lr, max_epochs, patience and batch_size must be positive; weight_decay >= 0")


ADAMW_KEYS = tuple(f.name for f in dataclasses.fields(AdamWParams) if f.name not in
                   {g.name for g in dataclasses.fields(SweepParams)})


def split_overrides(params_type: type, overrides: dict[str, Any]) -> tuple[dict, dict]:
    """(HeadConfig keys, the kind's keys) of ``--set`` overrides; unknown keys list the valid ones."""
    common = {f.name for f in dataclasses.fields(HeadConfig)}
    own = {f.name for f in dataclasses.fields(params_type)}
    unknown = sorted(set(overrides) - common - own)
    if unknown:
        raise UnknownName(f"unknown config key(s) {', '.join(unknown)} for head={overrides.get('head', 'linear')}; "
                          f"valid keys: {', '.join(sorted(common | own))}")
    return ({k: v for k, v in overrides.items() if k in common}, {k: v for k, v in overrides.items() if k in own})


@dataclasses.dataclass(frozen=True)
class FinetuneParams(AdamWParams):
    """Pretrained layers fine-tuned with a new classifier (LP-FT: the classifier starts as the linear probe).

    ``l2_penalties`` is the probe's sweep; pretrained layers learn at lr/30, the classifier at lr/10."""

    max_epochs: int = option(30, "epochs at most (the network on the images: its cosine schedule's length, "
                                 "fewer when max_minutes allows fewer)")
    dropout: float = option(0.2, "dropout before the classifier")
    tune_blocks: int | None = option(
        None, "the network on the images (a pooled cnn set): tune its last K EfficientNet-Lite blocks (unset: all layers)")
    train_size: int | None = option(
        None, "the network on the images: training and test resolution in px (unset: fit the images, twice their "
        "median shorter side, a multiple of 32, 64 px at least and the base set's crop at most)")
    max_minutes: float | None = option(
        10.0, "the network on the images: training budget in minutes; epochs, then the resolution, are chosen to fit "
        "it (none: max_epochs at train_size)")
    augment: str = option("trivial", "the network on the images: trivial (TrivialAugmentWide, then a random crop "
                          "and flip), flip (crop and flip only) or none")
    label_smoothing: float = option(0.1, "the network on the images: label smoothing of the training loss")
    layer_decay: float = option(
        0.9, "the network on the images: each block's learning rate is this times the one above it (1: one rate)")
    batch_norm: str = option("frozen", "the network on the images: frozen (pretrained statistics kept) or train")
    keep_probe: bool = option(
        True, "the network on the images: the head is the linear probe on the stored features when tuning does not "
        "beat it on validation (false: always the tuned network, e.g. to export one)")

    def __post_init__(self):
        super().__post_init__()
        if self.tune_blocks is not None and self.tune_blocks < 1:
            raise ValueError("tune_blocks must be >= 1 (unset: all layers)")
        if self.train_size is not None and not 32 <= self.train_size <= 1024:
            raise ValueError("train_size must be in 32..1024 px (none: fit the images)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("max_minutes must be > 0 (none: no budget)")
        check_choice("augment", self.augment, ("trivial", "flip", "none"))
        check_choice("batch_norm", self.batch_norm, ("frozen", "train"))
        if not 0 <= self.label_smoothing < 1 or not 0 < self.layer_decay <= 1:
            raise ValueError("label_smoothing must be in [0, 1); layer_decay in (0, 1]")


@dataclasses.dataclass(frozen=True)
class LinearParams(AdamWParams):
    """Multinomial logistic regression (the L2 penalty and class weighting chosen on validation)."""

    solver: str = option("auto", "lbfgs (exact), adamw (mini-batch), auto (lbfgs up to 4 GiB of features)")
    refit: bool = option(True, "fit again on train + validation at the chosen setting (as LogisticRegressionCV)")
    fusion: str = option(
        "auto", "several sets: early (one classifier on the joined features), late (one per set, their logits "
        "pooled with weights fitted on validation) or auto (the better on validation; the card reports both)")

    def __post_init__(self):
        super().__post_init__()
        check_choice("solver", self.solver, ("auto", "lbfgs", "adamw"))
        check_choice("fusion", self.fusion, ("auto", "early", "late"))


@dataclasses.dataclass(frozen=True)
class MLPParams(AdamWParams):
    """A multilayer perceptron (AdamW, early stopping, the L2 sweep on validation)."""

    hidden: tuple[int, ...] = option((512,), "layer widths")
    dropout: float = option(0.2, "dropout after each hidden layer")

    def __post_init__(self):
        super().__post_init__()
        if not self.hidden or min(self.hidden) < 1 or not 0 <= self.dropout < 1:
            raise ValueError("hidden must list positive widths; dropout in [0, 1)")


@dataclasses.dataclass(frozen=True)
class PrototypeParams:
    """Nearest class mean (no penalty to choose: for few-shot sets)."""

    refit: bool = option(True, "compute the means again on train + validation")


@dataclasses.dataclass(frozen=True)
class SequenceParams(AdamWParams):
    """Frame sequences (audio or bert frames=true): a 1D convolution, masked mean and attention pools."""

    hidden: tuple[int, ...] = option((128,), "the convolution's width (its first value)")
    dropout: float = option(0.2, "dropout before the classifier")
