"""Clip-level statistics over frames; the torch version ignores padded frames via the mask.

Layout of a pooled vector: for each feature (in config order), for each stat, that feature's dims.
"""
from __future__ import annotations

import numpy as np
import torch

STATS = ("mean", "std", "min", "max", "p10", "p25", "p50", "p75", "p90")


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
