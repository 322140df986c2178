"""A stand-in extractor for benchmarks/scale_model.py: the extractor interface, a fixed cost per item
(a sleep, as a GPU worker waits on its device), deterministic features, no model."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import time

import numpy as np

from pipeline.extractors.batching import MapExtractor
from pipeline.extractors.text.common import read_text
from pipeline.registry import register_extractor


@dataclasses.dataclass(frozen=True)
class StandinConfig:
    ms_per_item: float = 1.0

    def __post_init__(self):
        if self.ms_per_item < 0:
            raise ValueError("ms_per_item must be >= 0")


@register_extractor
class Standin(MapExtractor):
    name, modality, config_type, dim = "standin", "text", StandinConfig, 16
    chunk_size = 256

    def decoder(self, kind):
        return functools.partial(read_text, kind=kind, max_chars=10_000)

    def embed(self, texts):
        time.sleep(len(texts) * self.config.ms_per_item / 1000)
        return np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.uint8) for t in texts],
                        np.float32) / 255
