"""The ``cnn`` extractor's config (importable without torch: ``mmfeat describe`` reads it at once)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...config import check_choice, option


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """Image features. ``model``: efficientnet_lite0 (1, 2) | torchvision:<name> | timm:<name>.

    ``normalization``: ``weights`` (what the weights were trained with), ``imagenet`` or ``lite``
    ((x-127)/128). ``layers``: ``penultimate`` and/or module names, each global-average-pooled
    and concatenated. ``gpu_resize``: decode in workers, resize+crop on the device (auto: on CUDA).
    ``activations``: a module name (e.g. ``_blocks.14``): store that module's whole output (C x H x W,
    as bfloat16) instead of pooled vectors, for heads that fine-tune the layers above it.
    """

    extractor_version: ClassVar[str] = "3"  # bumped when the code computes other features (a new set id)

    # measured against lite0/lite2 on the dev photos: see README
    model: str = option(
        "efficientnet_lite1", "efficientnet_lite1 (default), efficientnet_lite0, efficientnet_lite2 (the images-large "
        "extra), torchvision:<name> or timm:<name> (with weights=)")
    layers: tuple[str, ...] = option(
        ("penultimate",), "penultimate and/or module names, each global-average-pooled and concatenated")
    normalization: str = option(
        "weights", "weights (what the weights were trained with), imagenet, or lite ((x-127)/128)")
    image_size: int | None = option(None, "crop size in pixels (default: the model's)")
    resize: int | None = option(
        None, "shorter side before the center crop (default: the model's, or image_size/0.875)")
    flip_tta: bool = option(False, "average the features of the image and its mirror")
    activations: str | None = option(
        None, "a module (e.g. _blocks.19) whose whole output is stored (bfloat16 C x H x W) for head=finetune")
    precision: str = option("auto", "auto (bf16 on CUDA and on CPUs with native bf16), fp32, bf16, fp16")
    weights: str | None = option(
        None, "a local state_dict file (.pth/.safetensors) for torchvision/timm models or tuned weights: its path is "
        "runtime, its sha256 part of the feature set id", runtime=True)
    batch_size: int | None = option(
        None, "images per forward pass (default 256 on CUDA, 16 on the CPU)", runtime=True)
    num_workers: int | None = option(
        None, "decode worker processes (default: all cores next to a GPU, a quarter on the CPU)", runtime=True)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", runtime=True)
    threads: int | None = option(None, "torch threads (default: as torch is set: OMP_NUM_THREADS, "
        "torch.set_num_threads)", runtime=True)
    gpu_resize: bool | None = option(
        None, "decode in workers, resize and crop on the device (default: on CUDA)", runtime=True)
    compile: bool = option(False, "torch.compile the model (faster on GPUs after a warm-up)", runtime=True)

    def __post_init__(self):
        check_choice("normalization", self.normalization, ("weights", "imagenet", "lite"))
        check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        check_choice("device", self.device.split(":")[0], ("auto", "cpu", "cuda"))
        if not self.layers:
            raise ValueError("layers must name at least one layer (e.g. penultimate)")
        if self.activations and (self.flip_tta or tuple(self.layers) != ("penultimate",)):
            raise ValueError("activations stores one module's output as it is: no flip_tta, no layers")
        for name, value in (("batch_size", self.batch_size), ("image_size", self.image_size), ("resize", self.resize)):  # noqa: E501
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")
