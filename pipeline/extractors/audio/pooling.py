"""Clip-level statistics over frames; the torch version ignores padded frames via the mask.

Layout of a pooled vector: for each feature (in config order), for each stat, that feature's dims.
With ``time_bins`` > 1 the whole-clip block is followed by one such block per contiguous time bin
(bin j of a clip of T frames holds frames [j·T // bins, (j+1)·T // bins), at least one frame).
"""
from __future__ import annotations

import numpy as np
import torch

from .config import STATS  # noqa: F401 (re-exported)


def _layout(parts: list[np.ndarray] | list[torch.Tensor], dims: list[int], cat):
    """parts[s] is (d_total,) per stat -> reorder to feature-major blocks."""
    out, start = [], 0
    for d in dims:
        out.extend(p[..., start:start + d] for p in parts)
        start += d
    return cat(out)


def pool_numpy(x: np.ndarray, stats: tuple[str, ...], dims: list[int]) -> np.ndarray:
    """x: (d_total, T) frames of one clip."""
    parts = []
    for s in stats:
        if s == "mean":
            parts.append(x.mean(1))
        elif s == "std":
            parts.append(x.std(1))
        elif s == "min":
            parts.append(x.min(1))
        elif s == "max":
            parts.append(x.max(1))
        else:
            parts.append(np.percentile(x, float(s[1:]), axis=1))
    return _layout(parts, dims, np.concatenate)


def pool_torch(x: torch.Tensor, mask: torch.Tensor, stats: tuple[str, ...], dims: list[int]) -> torch.Tensor:
    """x: (B, d_total, T) with mask (B, T) of valid frames."""
    m = mask[:, None, :].to(x.dtype)
    count = m.sum(-1)
    mean = (x * m).sum(-1) / count
    parts = []
    for s in stats:
        if s == "mean":
            parts.append(mean)
        elif s == "std":
            parts.append((((x - mean[..., None]) ** 2) * m).sum(-1).div(count).sqrt())
        elif s == "min":
            parts.append(x.masked_fill(~mask[:, None, :], float("inf")).amin(-1))
        elif s == "max":
            parts.append(x.masked_fill(~mask[:, None, :], float("-inf")).amax(-1))
        else:
            parts.append(torch.nanquantile(x.masked_fill(~mask[:, None, :], float("nan")), float(s[1:]) / 100, dim=-1))
    return _layout(parts, dims, lambda p: torch.cat(p, dim=-1))


def bin_bounds(length: int, j: int, bins: int) -> tuple[int, int]:
    """Frames [start, end) of time bin ``j`` of a clip of ``length`` frames (never empty)."""
    start, end = j * length // bins, (j + 1) * length // bins
    if end <= start:
        start = min(start, length - 1)
        end = start + 1
    return start, end


def pool_numpy_binned(x: np.ndarray, stats: tuple[str, ...], dims: list[int], bins: int) -> np.ndarray:
    blocks = [pool_numpy(x, stats, dims)]
    for j in range(bins if bins > 1 else 0):
        start, end = bin_bounds(x.shape[1], j, bins)
        blocks.append(pool_numpy(x[:, start:end], stats, dims))
    return np.concatenate(blocks)


def pool_torch_binned(x: torch.Tensor, mask: torch.Tensor, stats: tuple[str, ...], dims: list[int],
                      bins: int) -> torch.Tensor:
    blocks = [pool_torch(x, mask, stats, dims)]
    if bins > 1:
        length = mask.sum(1)
        t = torch.arange(mask.shape[1], device=mask.device)[None, :]
        for j in range(bins):
            start, end = j * length // bins, (j + 1) * length // bins
            empty = end <= start
            start = torch.where(empty, torch.minimum(start, length - 1), start)
            end = torch.where(empty, start + 1, end)
            blocks.append(pool_torch(x, mask & (t >= start[:, None]) & (t < end[:, None]), stats, dims))
    return torch.cat(blocks, dim=-1)
