"""``cnn``: pooled features of a frozen ImageNet CNN (EfficientNet-Lite0 by default)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from ...config import cached_file_digest
from ...registry import bf16_bits, register_extractor
from ..batching import MapExtractor
from ..runtime import autocast, resolve_device, resolve_dtype, use_threads, worker_count
from .config import CNNConfig
from .decode import decode_item, resize_crop_tensor, stack_images
from .models import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, Activations, PooledFeatures, load_backbone


@register_extractor
class CNNExtractor(MapExtractor):
    name = "cnn"
    modality = "image"
    config_type = CNNConfig
    # 2: EfficientNet-Lite's weights-normalization is Lite's (x-127)/128; 3: precision=auto is bf16 on CPUs
    # with native bf16 (the same features an old set holds would no longer be computed: a new set id)
    version = CNNConfig.extractor_version

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
