"""Frame sequences as padded arrays: (n, T, d + 1), the valid-frame mask in the last channel, so that every
row-indexing helper (splits, mini-batches) handles them as plain arrays."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import MmfeatError


def padded(frames: pa.ChunkedArray | pa.Array, frame_dim: int, max_bytes: float | None = None) -> np.ndarray:
    """list<fixed_size_list<float32>[d]> -> (n, T, d + 1) float32, zero-padded, mask in the last channel
    (T: the longest sequence). Refused when that would exceed ``max_bytes`` (long documents' tokens)."""
    array = frames.combine_chunks() if isinstance(frames, pa.ChunkedArray) else frames
    if array.null_count:
        raise MmfeatError("some rows have no frame sequence: extract with --set frames=true")
    offsets = array.offsets.to_numpy()
    lengths = np.diff(offsets)
    t = int(lengths.max() if len(lengths) else 1)
    size = len(lengths) * t * (frame_dim + 1) * 4
    if max_bytes is not None and size > max_bytes:
        raise MmfeatError(f"padded sequences would take {size / 2**30:.1f} GiB ({len(lengths)} rows x {t} frames x "
                          f"{frame_dim}), over memory_gb: sequence heads are for short sequences (clips, sentences); "
                          "use the pooled features, or raise memory_gb")
    values = array.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, frame_dim)
    values = values[offsets[0]:offsets[-1]]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    steps = np.arange(len(rows)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out = np.zeros((len(lengths), t, frame_dim + 1), np.float32)
    out[rows, steps, :frame_dim] = values
    out[rows, steps, frame_dim] = 1.0
    return out


def frame_standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per frame dimension over the valid frames; the mask channel passes unchanged."""
    valid = x[..., -1] > 0.5
    frames = x[valid][:, :-1].astype(np.float64)
    mean = np.append(frames.mean(0), 0.0).astype(np.float32)
    std = np.append(np.maximum(frames.std(0), 1e-6), 1.0).astype(np.float32)
    return mean, std


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = (x - mean) / std
    out[..., :-1] *= x[..., -1:]  # padding stays zero
    return out.astype(np.float32)
