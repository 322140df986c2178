"""``cnn``: pooled features of a frozen ImageNet CNN (EfficientNet-Lite0 by default)."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from ...config import cached_file_digest, check_choice, option
from ...registry import bf16_bits, register_extractor
from ..batching import MapExtractor
from ..runtime import autocast, resolve_device, resolve_dtype, use_threads, worker_count
from .decode import decode_item, resize_crop_tensor, stack_images
from .models import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, Activations, PooledFeatures, load_backbone


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """Image features. ``model``: efficientnet_lite0 (1, 2) | torchvision:<name> | timm:<name>.

    ``normalization``: ``weights`` (what the weights were trained with), ``imagenet`` or ``lite``
    ((x-127)/128). ``layers``: ``penultimate`` and/or module names, each global-average-pooled
    and concatenated. ``gpu_resize``: decode in workers, resize+crop on the device (auto: on CUDA).
    ``activations``: a module name (e.g. ``_blocks.14``): store that module's whole output (C x H x W,
    as bfloat16) instead of pooled vectors, for heads that fine-tune the layers above it.
    """

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
        None, "a local state_dict file (.pth/.safetensors) for torchvision/timm models", runtime=True)
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


@register_extractor
class CNNExtractor(MapExtractor):
    name = "cnn"
    modality = "image"
    config_type = CNNConfig
    # 2: EfficientNet-Lite's weights-normalization is Lite's (x-127)/128; 3: precision=auto is bf16 on CPUs
    # with native bf16 (the same features an old set holds would no longer be computed: a new set id)
    version = "3"

    def __init__(self, config: CNNConfig):
        super().__init__(config)
        backbone = load_backbone(config.model, config.weights)
        self._weights_sha = cached_file_digest(backbone.weights_path)
        data = backbone.data
        self.crop = config.image_size or data.crop
        self.resize = config.resize or (data.resize if config.image_size is None else round(self.crop / 0.875))
        self.interpolation = data.interpolation
        mean, std = {"weights": (data.mean, data.std), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                     "lite": (LITE_MEAN, LITE_STD)}[config.normalization]
        self.device = resolve_device(config.device)
        use_threads(config.threads)
        self.dtype = resolve_dtype(config.precision, self.device, cpu_bf16=True)
        # channels_last pays on both: cuDNN/bf16 on CUDA, and oneDNN on the CPU (1.8x measured on 2 cores).
        net = Activations(backbone.model, config.activations) if config.activations else \
            PooledFeatures(backbone.model, config.layers)
        self.net = net.to(self.device).to(memory_format=torch.channels_last)
        # Small CPU batches stay in cache (16 was fastest on the CPU); GPUs want large ones.
        self.batch_size = config.batch_size or (256 if self.device.type == "cuda" else 16)
        self.chunk_size = self.batch_size
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self.forward = torch.compile(self.net) if config.compile else self.net
        self.gpu_resize = config.gpu_resize if config.gpu_resize is not None else self.device.type == "cuda"
        with torch.inference_mode():
            probe = self.net(torch.zeros(1, 3, self.crop, self.crop, device=self.device))
        self._tensor_shape = tuple(int(d) for d in probe.shape[1:]) if config.activations else None
        self._dim = int(np.prod(probe.shape[1:]))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def weights_sha256(self) -> str:
        return self._weights_sha

    @classmethod
    def weights_digest(cls, config: CNNConfig) -> str | None:
        from .models import weights_path

        path = weights_path(config.model, config.weights)
        if path is None:
            raise NotImplementedError  # the model's own loader says what is missing
        return cached_file_digest(path)

    @property
    def tensor_shape(self) -> tuple[int, ...] | None:
        return self._tensor_shape

    def describe(self) -> dict:
        return {"device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""), "crop": self.crop,
                "resize": self.resize, "interpolation": self.interpolation}

    def decoder(self, kind: str):
        return functools.partial(decode_item, resize=self.resize, crop=self.crop, interpolation=self.interpolation,
                                 resize_in_worker=not self.gpu_resize)

    collate = staticmethod(stack_images)

    def decode_workers(self, n_items: int) -> int:
        return worker_count(self.config.num_workers, self.device, n_items, self.batch_size)

    def embed(self, images) -> np.ndarray:
        out = self.forward_features(self._normalize(images))
        return bf16_bits(out) if self._tensor_shape else out.cpu().numpy()

    def _normalize(self, images) -> torch.Tensor:
        if self.gpu_resize:
            images = [t.to(self.device, non_blocking=True) for t in images]
            x = resize_crop_tensor(images, self.resize, self.crop, self.interpolation)
        else:
            x = images.to(self.device, non_blocking=True).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a normalized float batch (N, 3, crop, crop)."""
        with torch.inference_mode(), autocast(self.device, self.dtype):
            f = self.forward(x).float()
            if self.config.flip_tta:
                f = (f + self.forward(x.flip(-1)).float()) / 2
        return f
