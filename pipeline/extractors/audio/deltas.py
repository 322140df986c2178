"""Δ and ΔΔ of frame features, as ``librosa.feature.delta(x, width=9, order, mode="interp")``.

librosa's delta is a Savitzky-Golay derivative (polyorder = order). With mode="interp" the first and last
width//2 frames take the derivative of the polynomial fitted to the first (last) window; for polyorder =
deriv that derivative is constant, so it equals the filter's value at that window's centre: the edges
repeat the first (last) interior value. A clip with fewer frames than ``width`` (librosa refuses it)
uses the largest odd width that fits, and has zero deltas below 3 frames.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

WIDTH = 9


@functools.lru_cache(maxsize=None)
def _coefficients(width: int, order: int) -> np.ndarray:
    from scipy.signal import savgol_coeffs

    return savgol_coeffs(width, order, deriv=order, use="dot")


def _width(n_frames: int) -> int:
    w = min(WIDTH, n_frames if n_frames % 2 else n_frames - 1)
    return w if w >= 3 else 0


def delta_numpy(x: np.ndarray, order: int) -> np.ndarray:
    """Deltas of (d, T) frames of one clip (the librosa backend, and short clips on the torch backend)."""
    width = _width(x.shape[-1])
    if not width:
        return np.zeros_like(x)
    half = width // 2
    w = _coefficients(width, order)
    windows = np.lib.stride_tricks.sliding_window_view(x, width, axis=-1)  # (d, T - width + 1, width)
    interior = windows @ w.astype(x.dtype)
    return np.concatenate([np.repeat(interior[:, :1], half, 1), interior, np.repeat(interior[:, -1:], half, 1)], 1)


def delta_torch(x: torch.Tensor, n_frames: np.ndarray, order: int) -> torch.Tensor:
    """Deltas of a padded batch (B, d, T) whose clip b has ``n_frames[b]`` valid frames."""
    b, d, t = x.shape
    half = WIDTH // 2
    out = torch.zeros_like(x)
    long = n_frames >= WIDTH
    if long.any() and t >= WIDTH:
        w = torch.as_tensor(_coefficients(WIDTH, order), dtype=x.dtype, device=x.device).view(1, 1, WIDTH)
        interior = F.conv1d(x.reshape(b * d, 1, t), w).view(b, d, t - WIDTH + 1)
        last = torch.as_tensor(np.maximum(n_frames - 1 - 2 * half, 0), device=x.device)
        index = (torch.arange(t, device=x.device)[None, :] - half).clamp(min=0)
        index = torch.minimum(index, last[:, None])  # frames past a clip's last interior value repeat it
        out = interior.gather(-1, index[:, None, :].expand(b, d, t))
    for k in np.flatnonzero(~long):  # rare: clips shorter than the filter
        n = int(n_frames[k])
        out[k] = 0
        out[k, :, :n] = torch.as_tensor(delta_numpy(x[k, :, :n].cpu().numpy(), order), device=x.device)
    return out
