"""A test-only extractor: deterministic hash features of texts, with a hook to pause mid-shard."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import numpy as np

from pipeline.config import runtime_field
from pipeline.errors import BadInput
from pipeline.registry import BatchResult, Extractor, ItemBatch, Reject, register_extractor


@dataclasses.dataclass(frozen=True)
class HashConfig:
    dim: int = 8
    salt: str = ""
    # when set: touch it, then sleep (the test kills the process meanwhile); not part of the feature set id
    pause_file: str = runtime_field("")
    # when set and the file is absent: create it and kill this process (a worker dying mid-shard)
    kill_once_file: str = runtime_field("")

    def __post_init__(self):
        if self.dim < 1:
            raise ValueError("dim must be >= 1")


@register_extractor
class HashTextExtractor(Extractor):
    name = "test-hash"
    modality = "text"
    config_type = HashConfig
    calls: list[int] = []

    @property
    def dim(self) -> int:
        return self.config.dim

    def extract(self, batch: ItemBatch) -> BatchResult:
        HashTextExtractor.calls.append(len(batch))
        if self.config.kill_once_file and not os.path.exists(self.config.kill_once_file):
            open(self.config.kill_once_file, "w").close()
            os._exit(17)
        if self.config.pause_file:
            open(self.config.pause_file, "w").close()
            time.sleep(60)
        ok, feats, rejects = [], [], []
        for i, text in enumerate(batch.sources):
            try:
                if not text or not text.strip():
                    raise BadInput("empty_text", "empty", stage="validate")
            except BadInput as err:
                rejects.append(Reject.from_error(i, err))
                continue
            digest = hashlib.sha256((self.config.salt + text).encode()).digest()
            feats.append(np.frombuffer(digest * (1 + self.config.dim // 32), dtype=np.uint8)[: self.config.dim])
            ok.append(i)
        matrix = np.array(feats, dtype=np.float32).reshape(len(ok), self.config.dim) / 255.0
        return BatchResult(matrix, np.array(ok, dtype=np.int64), rejects)


def write_text_manifest(path: str, n: int, start: int = 0, empty_every: int = 0) -> str:
    import json

    with open(path, "w") as f:
        for i in range(start, start + n):
            text = "" if empty_every and i % empty_every == 0 else f"text number {i} " + "word " * (i % 7)
            f.write(json.dumps({"id": f"t{i:06d}", "text": text, "label": "ab"[i % 2],
                                "split": ("train", "train", "val", "test")[i % 4]}) + "\n")
    return path


