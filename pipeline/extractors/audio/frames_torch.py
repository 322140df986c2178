"""Frame-level spectral features computed batched in torch, with librosa's filter banks and definitions.

Clips of different lengths are zero-padded into one batch; ``mask`` marks the frames that belong
to each clip, and every clip-level reduction (the dB ceiling, statistics) ignores the rest.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .deltas import delta_torch

from .frames_librosa import CONTRAST_FLOOR
from .tonal_torch import (PIPTRACK_N_FFT, UnsupportedRate, estimate_tuning, harmonic, normalize, pad_batch, tonnetz,
                          tuning_spectrum)

AMIN = 1e-10


def classic_config(cfg):
    """``cfg`` with the parameters the classic193 recipe uses (librosa's defaults)."""
    import dataclasses

    return dataclasses.replace(cfg, n_fft=2048, hop_length=512, n_mels=128, n_mfcc=40, fmin=0.0, fmax=None, htk=False,
                               mel_norm="slaney", center=True, pad_mode="constant", top_db=80.0, tuning=0.0,
                               contrast_fmin=200.0, contrast_bands=6)


class TorchFrames:
    def __init__(self, cfg, sr: int, device: torch.device, dtype: torch.dtype):
        import librosa
        import scipy.fft

        self.cfg, self.sr, self.device, self.dtype = cfg, sr, device, dtype
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        self.window = torch.hann_window(cfg.n_fft, periodic=True, dtype=dtype, device=device)
        self.mel = as_t(librosa.filters.mel(sr=sr, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                                            htk=cfg.htk, norm=cfg.mel_norm))
        self.chroma = as_t(librosa.filters.chroma(sr=sr, n_fft=cfg.n_fft, tuning=cfg.tuning, n_chroma=12))
        self.dct = as_t(scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc])
        self.freq = as_t(librosa.fft_frequencies(sr=sr, n_fft=cfg.n_fft))[None, :, None]
        self.bands = _contrast_bands(librosa.fft_frequencies(sr=sr, n_fft=cfg.n_fft), sr, cfg.contrast_fmin,
                                     cfg.contrast_bands)
        self.tiny = torch.finfo(dtype).tiny
        self._chroma_banks: dict[float, torch.Tensor] = {}

    def n_frames(self, lengths: np.ndarray) -> np.ndarray:
        c = self.cfg
        return 1 + lengths // c.hop_length if c.center else 1 + np.maximum(lengths - c.n_fft, 0) // c.hop_length

    def _padded(self, y: torch.Tensor, lengths: np.ndarray, mode: str, width: int) -> torch.Tensor:
        """Each clip of the batch padded by n_fft//2 with ``mode`` (constant or edge: librosa's
        zcr/rms framing), then zeros, to one length; built on the device by one gather."""
        c = self.cfg
        pad = c.n_fft // 2 if c.center else 0
        total = max((width - 1) * c.hop_length + c.n_fft, y.shape[1] + 2 * pad)
        if mode == "constant":
            return F.pad(y, (pad, total - pad - y.shape[1]))
        n = torch.as_tensor(lengths, device=y.device)[:, None]
        pos = torch.arange(total, device=y.device)[None, :] - pad
        x = y.gather(1, torch.minimum(pos.clamp(min=0), n - 1))
        return torch.where(pos < n + pad, x, torch.zeros_like(x))

    def _frame_sum(self, x: torch.Tensor, kernel: int, offset: int, width: int) -> torch.Tensor:
        """Sum over each frame's window [t*hop + offset, t*hop + offset + kernel): (B, 1, T)."""
        pooled = F.avg_pool1d(x[:, None, offset:], kernel, self.cfg.hop_length)[:, :, :width]
        return pooled * kernel

    def batch(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Clips zero-padded into one (B, L) tensor on the device."""
        return pad_batch(clips, self.dtype, self.device)

    def magnitude(self, y: torch.Tensor, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """|STFT| (B, F, T) of a padded batch and its valid-frame mask (B, T)."""
        c = self.cfg
        spec = torch.stft(y, c.n_fft, c.hop_length, window=self.window, center=c.center, pad_mode=c.pad_mode,
                          return_complex=True)
        width = spec.shape[-1]
        return spec.abs(), torch.as_tensor(np.arange(width)[None, :] < self.n_frames(lengths)[:, None], device=self.device)

    def compute(self, clips: list[np.ndarray], features: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Frame features {name: (B, d, T)} and the valid-frame mask (B, T)."""
        c = self.cfg
        lengths = np.array([len(y) for y in clips])
        y = self.batch(clips)
        mag, mask = self.magnitude(y, lengths)
        width = mag.shape[-1]
        power = mag.square()
        out: dict[str, torch.Tensor] = {}
        if {"mfcc", "mfcc_delta", "mfcc_delta2", "mel"} & set(features):
            mel_db = self.db(self.mel @ power, mask, c.top_db)
            if "mel" in features:
                out["mel"] = mel_db
            mfcc = self.dct @ mel_db
            out["mfcc"] = mfcc
            n_frames = mask.sum(1).cpu().numpy()
            for order, name in ((1, "mfcc_delta"), (2, "mfcc_delta2")):
                if name in features:
                    out[name] = delta_torch(mfcc, n_frames, order)
        if "chroma" in features:
            raw = self.chroma @ power
            norm = raw.abs().amax(dim=1, keepdim=True)
            out["chroma"] = raw / torch.where(norm < self.tiny, torch.ones_like(norm), norm)
        if "contrast" in features:
            out["contrast"] = self.contrast(mag, mask)
        if "stft" in features:
            out["stft"] = self.stft_stats(mag)
        if "zcr" in features:
            # A crossing at m compares samples m-1 and m; a frame counts crossings at its positions 1..n_fft-1.
            x = self._padded(y, lengths, "edge", width)
            sign = torch.signbit(torch.where(x.abs() <= 1e-10, torch.zeros_like(x), x))
            crossing = torch.zeros_like(x)
            crossing[:, 1:] = (sign[:, 1:] != sign[:, :-1]).to(x.dtype)
            out["zcr"] = self._frame_sum(crossing, c.n_fft - 1, 1, width).round() / c.n_fft
        if "rms" in features:
            x = self._padded(y, lengths, "constant", width)
            out["rms"] = (self._frame_sum(x.square(), c.n_fft, 0, width) / c.n_fft).clamp(min=0).sqrt()
        if "tonnetz" in features:
            ton, _ = tonnetz(clips, self.sr, c.hop_length, self._tuning_spectrum(y, lengths, mag, mask),
                             self.device, self.dtype)
            out["tonnetz"] = F.pad(ton, (0, max(0, width - ton.shape[-1])))[..., :width]
        return out, mask

    def classic193(self, clips: list[np.ndarray]) -> torch.Tensor:
        """The classic 193-dim vector (see frames_librosa.classic193) for each clip: (B, 193).
        Needs a config with librosa's defaults (``classic_config``)."""
        lengths = np.array([len(y) for y in clips])
        y = self.batch(clips)
        mag, mask = self.magnitude(y, lengths)
        power = mag.square()
        mel = self.mel @ power
        tunings = estimate_tuning(mag, mask, self.sr, 12)
        chroma_fb = torch.stack([self._chroma_bank(float(t)) for t in tunings])
        harm = harmonic(y, lengths)
        on_host = harm.cpu().numpy()  # the constant-Q octaves are resampled by soxr
        ton, ton_mask = tonnetz([on_host[i, :n] for i, n in enumerate(lengths)], self.sr, 512,
                                self._tuning_spectrum(harm, lengths), self.device, self.dtype)
        blocks = [(self.dct @ self.db(mel, mask, 80.0), mask),
                  (normalize(torch.bmm(chroma_fb, mag), "inf"), mask),
                  (mel, mask), (self.contrast(mag, mask), mask), (ton, ton_mask)]
        return torch.cat([(x * m[:, None, :]).sum(-1) / m.sum(-1, keepdim=True) for x, m in blocks], dim=1)

    def _tuning_spectrum(self, y, lengths, mag=None, mask=None):
        """The tuning estimate's spectrum: this config's own when it is the same STFT."""
        c = self.cfg
        same = (c.n_fft, c.hop_length, c.center, c.pad_mode) == (PIPTRACK_N_FFT, PIPTRACK_N_FFT // 4, True, "constant")
        if not same:
            return tuning_spectrum(y, lengths)
        return (mag, mask) if mag is not None else self.magnitude(y, lengths)

    def _chroma_bank(self, tuning: float) -> torch.Tensor:
        if tuning not in self._chroma_banks:
            import librosa

            self._chroma_banks[tuning] = torch.as_tensor(
                librosa.filters.chroma(sr=self.sr, n_fft=self.cfg.n_fft, tuning=tuning, n_chroma=12),
                dtype=self.dtype, device=self.device)
        return self._chroma_banks[tuning]

    def db(self, x: torch.Tensor, mask: torch.Tensor, top_db: float | None) -> torch.Tensor:
        """librosa.power_to_db(x, ref=1.0) with the top_db floor taken per clip over its own frames."""
        log = 10.0 * torch.log10(x.clamp(min=AMIN))
        if top_db is None:
            return log
        peak = log.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        return torch.maximum(log, peak - top_db)

    def contrast(self, mag: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        peak = mag.masked_fill(~mask[:, None, :], 0).amax(dim=(1, 2), keepdim=True)
        mag = torch.maximum(mag, peak * CONTRAST_FLOOR)  # see frames_librosa.CONTRAST_FLOOR
        peaks, valleys = [], []
        for rows, k in self.bands:
            band = mag[:, rows[0]:rows[-1] + 1, :]  # a slice, not a copy; topk: only the k extremes, no full sort
            valleys.append(band.topk(k, dim=1, largest=False).values.mean(1))
            peaks.append(band.topk(k, dim=1).values.mean(1))
        return self.db(torch.stack(peaks, 1), mask, 80.0) - self.db(torch.stack(valleys, 1), mask, 80.0)

    def stft_stats(self, mag: torch.Tensor) -> torch.Tensor:
        """Spectral centroid, bandwidth (p=2), roll-off (85%) and flatness per frame. Centroid and
        bandwidth come from two matrix-vector products (first and second moments of frequency, in
        float64: the second moment minus the squared centroid cancels digits), roll-off from the
        count of bins below 85% of the cumulative magnitude."""
        spec = mag.transpose(1, 2)  # (B, T, F); torch.stft's output is laid out frequency-fastest
        total = spec.sum(-1, keepdim=True).double()
        empty = total < self.tiny
        total = torch.where(empty, torch.ones_like(total), total)
        freq = self.freq[0, :, 0].double()
        wide = spec.double()
        centroid = (wide @ freq)[..., None] / total
        spread = ((wide @ freq.square())[..., None] / total - centroid.square()).clamp(min=0).sqrt()
        centroid, spread = (torch.where(empty, torch.zeros_like(x), x).to(mag.dtype) for x in (centroid, spread))
        cumulative = spec.cumsum(-1)
        below = (cumulative < 0.85 * cumulative[..., -1:]).sum(-1, keepdim=True)
        rolloff = self.freq[0, :, 0][below.clamp(max=spec.shape[-1] - 1)]
        power = spec.square().clamp(min=AMIN)
        flatness = power.log().mean(-1, keepdim=True).exp() / power.mean(-1, keepdim=True)
        return torch.cat([centroid, spread, rolloff, flatness], dim=-1).transpose(1, 2)


def _contrast_bands(freq: np.ndarray, sr: int, fmin: float, n_bands: int) -> list[tuple[np.ndarray, int]]:
    """librosa.feature.spectral_contrast's octave bands: (frequency rows, quantile count) per band."""
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * sr):
        raise UnsupportedRate(f"contrast bands exceed Nyquist at sr={sr}: reduce contrast_fmin or contrast_bands")
    bands = []
    for k, (lo, hi) in enumerate(zip(octa[:-1], octa[1:])):
        current = np.logical_and(freq >= lo, freq <= hi)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == n_bands:
            current[idx[-1] + 1:] = True
        rows = np.flatnonzero(current)
        if k < n_bands:
            rows = rows[:-1]
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))  # contiguous: contrast slices them
        bands.append((rows, int(max(np.rint(0.02 * current.sum()), 1))))
    return bands
