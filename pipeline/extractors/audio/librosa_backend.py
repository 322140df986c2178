"""The librosa backend of ``spectral``: decode and compute each clip in a worker process."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .clips import ClipResult, clip_windows
from .config import frame_dims
from .decode import load_clip
from .pooling import pool_numpy_binned


def decode_item(args):
    path, cfg = args
    from ...errors import BadInput

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crop = cfg.max_duration if cfg.long_clips == "crop" else None
            return load_clip(path, cfg.sr, cfg.min_duration, cfg.pad_short, crop, cfg.reject_silence,
                             windowed=cfg.long_clips == "split"), None
    except BadInput as err:
        return None, err


def librosa_item(args) -> ClipResult:
    """Decode and compute one clip (each of its windows) with librosa (runs in a worker process)."""
    from ...errors import BadInput

    (decoded, err), (_, cfg) = decode_item(args), args
    if err is not None:
        return ClipResult(error=err)
    y, sr, padded_from = decoded
    windows = clip_windows(len(y), sr, cfg)
    vectors, seqs = [], []
    for start, end in windows:
        try:
            vector, seq = _librosa_window(y[start:end], sr, cfg)
        except Exception as exc:  # librosa raises ParameterError for e.g. tonnetz bins above Nyquist at 8 kHz
            if type(exc).__name__ == "ParameterError":
                return ClipResult(error=BadInput("unsupported_rate", f"{exc} (sr={sr})", stage="features"))
            raise
        vectors.append(vector)
        seqs.append(seq)
    return ClipResult(np.stack(vectors), seqs, windows, sr, padded_from)


def _librosa_window(y: np.ndarray, sr: int, cfg):
    from .frames_librosa import classic193, librosa_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short clips: n_fft > len warns; centered padding still defines them
        if cfg.preset == "classic193":
            return classic193(y, sr).astype(np.float32), None
        frames = librosa_frames(y.astype(np.float64) if cfg.precision == "float64" else y, sr, cfg, cfg.features)
    stacked = np.concatenate([frames[f] for f in cfg.features]).astype(np.float64)
    return pool_numpy_binned(stacked, cfg.stats, [frame_dims(cfg)[f] for f in cfg.features],
                             cfg.time_bins).astype(np.float32), \
        (stacked.T.astype(np.float32) if cfg.frames else None)


def init_pool_worker() -> None:
    """Pool worker start: one thread per process (BLAS pools spin-wait and, one per process, would
    oversubscribe the cores the pool already fills), then numba compiled once."""
    import librosa
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)
    y = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        librosa.feature.chroma_stft(y=y, sr=22050, tuning=0.0)
        librosa.feature.zero_crossing_rate(y)
