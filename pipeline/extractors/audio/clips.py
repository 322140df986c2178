"""Per-clip results of the audio extractor: windows a clip is cut into, and how the rows of a batch
(one per window) are assembled, with what each row's meta says about it."""
from __future__ import annotations

import dataclasses

import numpy as np

from ...errors import BadInput
from ...registry import BatchResult, Reject


@dataclasses.dataclass
class ClipResult:
    """One clip's vectors (one row per window), or the error that rejects it."""

    vectors: np.ndarray | None = None  # float32 (n_windows, dim)
    sequences: list | None = None  # per window: (frames, d) or None
    windows: np.ndarray | None = None  # (n_windows, 2) sample offsets
    rate: int = 0
    padded_from: float | None = None  # seconds of real audio, when padded up to min_duration
    error: BadInput | None = None


def clip_windows(n: int, sr: int, cfg) -> np.ndarray:
    """Sample offsets (start, end) of the windows a clip of ``n`` samples is cut into: one window
    (the clip) unless ``long_clips=split``; full-length windows, the last one ending at the clip's end."""
    if cfg.long_clips != "split" or n <= int(cfg.max_duration * sr):
        return np.array([[0, n]])
    width = int(cfg.max_duration * sr)
    hop = max(1, int((cfg.window_hop or cfg.max_duration) * sr))
    starts = list(range(0, n - width + 1, hop))
    if starts[-1] + width < n:
        starts.append(n - width)
    return np.array([[s, s + width] for s in starts])


def assemble(results: list[ClipResult], dim: int, frames: bool, split: bool) -> BatchResult:
    """Rows of accepted clips in batch order (a clip's windows together) and the rejects. Padded clips
    say so in their rows' meta (``padded_from_s``: the seconds of real audio)."""
    good = [i for i, r in enumerate(results) if r.error is None]
    rejects = [Reject.from_error(i, r.error) for i, r in enumerate(results) if r.error is not None]
    ok = np.array([i for i in good for _ in range(len(results[i].vectors))], np.int64)
    features = np.concatenate([results[i].vectors for i in good]) if good else np.zeros((0, dim), np.float32)
    sequences = [s for i in good for s in results[i].sequences] if frames else None
    segments = np.concatenate([results[i].windows / results[i].rate for i in good] + [np.zeros((0, 2))]) if split else None
    row_meta = None
    if any(results[i].padded_from is not None for i in good):
        row_meta = [{} if results[i].padded_from is None else {"padded_from_s": f"{results[i].padded_from:.3f}"}
                    for i in good for _ in range(len(results[i].vectors))]
    return BatchResult(features.astype(np.float32), ok, rejects, sequences, segments, row_meta)
