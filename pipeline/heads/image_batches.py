"""Training batches of images for network fine-tuning (network.py): decoded by the extraction's own
decoder in DataLoader workers, unreadable files skipped and reported, random crops and flips applied to
whole batches on the device."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import BadInput


class Images(torch.utils.data.Dataset):
    """(uint8 image, class, row) per row; an unreadable file yields (None, class, reason)."""

    def __init__(self, paths: list[str], y: np.ndarray, decode):
        self.paths, self.y, self.decode = paths, y, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.decode(self.paths[i]), int(self.y[i]), i
        except BadInput as exc:
            return None, int(self.y[i]), f"{exc.reason}: {os.path.basename(self.paths[i])}"


def collate(batch):
    kept = [b for b in batch if b[0] is not None]
    skipped = [b[2] for b in batch if b[0] is None]
    if not kept:
        return None, None, skipped
    return torch.stack([b[0] for b in kept]), torch.tensor([b[1] for b in kept]), skipped


def random_crops(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """A random ``crop`` x ``crop`` window of each image (N, C, H, W), each flipped left-right with
    probability 1/2: one gather for the whole batch."""
    n, c, h, w = x.shape
    top = torch.randint(0, h - crop + 1, (n,), generator=gen).to(x.device)
    left = torch.randint(0, w - crop + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    steps = torch.arange(crop, device=x.device)
    rows = top[:, None] + steps
    cols = left[:, None] + torch.where(flip[:, None], crop - 1 - steps, steps)
    return x[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class TrainingDecode:
    """The extraction's decoder at another crop size (the training square), picklable for workers."""

    def __init__(self, decode_item, resize: int, crop: int, interpolation: str):
        self.args = (decode_item, resize, crop, interpolation)

    def __call__(self, path: str) -> torch.Tensor:
        decode_item, resize, crop, interpolation = self.args
        return decode_item(path, resize=resize, crop=crop, interpolation=interpolation, resize_in_worker=True)
