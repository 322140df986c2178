"""Tonal features batched in torch, as librosa defines them: the tuning estimate (piptrack), the
harmonic part (HPSS), constant-Q chroma and tonnetz.

The constant-Q transform follows ``librosa.vqt`` octave by octave: each octave's filters multiply an
STFT of the signal at that octave's rate. The halving between octaves is librosa's own resampler
(soxr, on the host): a different anti-alias filter would move the lower octaves by more than the
parity tolerance. STFTs, filter products, median filters and the inverse STFT run on the device.
Each clip has its own tuning estimate, so each clip gets its own filter bank (cached per tuning).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

CQT_BINS_PER_OCTAVE = 36  # chroma_cqt's defaults: 7 octaves of 36 bins from C1, 'soxr_hq' halving
CQT_OCTAVES = 7
PIPTRACK_N_FFT = 2048
HPSS_KERNEL = 31


def pad_batch(arrays: list[np.ndarray], dtype: torch.dtype, device) -> torch.Tensor:
    """1-D arrays zero-padded into one (B, L) tensor on the device."""
    batch = np.zeros((len(arrays), max(len(a) for a in arrays)), np.float64 if dtype == torch.float64 else np.float32)
    for i, a in enumerate(arrays):
        batch[i, : len(a)] = a
    return torch.as_tensor(batch, device=device)


def tuning_spectrum(y: torch.Tensor, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The magnitude STFT that librosa's tuning estimate uses (2048-point Hann, hop 512, centred) of
    a padded batch, and its valid-frame mask."""
    hop = PIPTRACK_N_FFT // 4
    window = torch.hann_window(PIPTRACK_N_FFT, periodic=True, dtype=y.dtype, device=y.device)
    mag = torch.stft(y, PIPTRACK_N_FFT, hop, window=window, center=True, pad_mode="constant", return_complex=True).abs()
    frames = torch.as_tensor(1 + lengths // hop, device=y.device)
    return mag, torch.arange(mag.shape[-1], device=y.device)[None, :] < frames[:, None]


class UnsupportedRate(ValueError):
    """The transform is undefined at this sample rate (librosa raises ParameterError there)."""


def _reflect_pad_index(n: torch.Tensor, size: int, half: int, device) -> torch.Tensor:
    """Indices (len(n), size + 2*half) padding an axis by ``half`` each side with scipy.ndimage's
    'reflect' extension (d c b a | a b c d | d c b a), about each row's own length n."""
    pos = torch.arange(-half, size + half, device=device)[None, :]
    n = n.to(device)[:, None].clamp(min=1)
    m = torch.remainder(pos, 2 * n)
    return torch.where(m >= n, 2 * n - 1 - m, m)


def _median_filters(mag: torch.Tensor, frames: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scipy median_filter along time (1 x kernel) and along frequency (kernel x 1), mode='reflect';
    time is reflected at each clip's own last frame."""
    b, f, t = mag.shape
    half = kernel // 2
    harm = torch.empty_like(mag)
    perc = torch.empty_like(mag)
    time_idx = _reflect_pad_index(frames, t, half, mag.device)  # (B, T + 2*half)
    freq_idx = _reflect_pad_index(torch.tensor([f]), f, half, mag.device)[0]
    step = max(1, int(2 ** 27 // max(1, f * t * kernel)))  # bounds the (B, F, T, kernel) windows to ~0.5 GB
    for s in range(0, b, step):
        m = mag[s:s + step]
        padded = m.gather(2, time_idx[s:s + step, None, :].expand(-1, f, -1))
        harm[s:s + step] = padded.unfold(2, kernel, 1).median(-1).values
        padded = m.transpose(1, 2)[:, :, freq_idx]  # window along the last, contiguous axis
        perc[s:s + step] = padded.unfold(2, kernel, 1).median(-1).values.transpose(1, 2)
    return harm, perc


def harmonic(y: torch.Tensor, lengths: np.ndarray, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """librosa.effects.harmonic of each row of ``y`` (B, L), zero-padded past ``lengths``."""
    window = torch.hann_window(n_fft, periodic=True, dtype=y.dtype, device=y.device)
    spec = torch.stft(y, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    frames = torch.as_tensor(1 + lengths // hop, device=y.device)
    valid = torch.arange(spec.shape[-1], device=y.device)[None, :] < frames[:, None]
    mag = spec.abs()
    harm, perc = _median_filters(mag, frames, HPSS_KERNEL)
    # util.softmask(harm, perc, power=2, split_zeros=True) and magphase's phase, in librosa's order
    z = torch.maximum(harm, perc)
    bad = z < torch.finfo(mag.dtype).tiny
    z = torch.where(bad, torch.ones_like(z), z)
    mask, ref = (harm / z) ** 2, (perc / z) ** 2
    mask = torch.where(bad, torch.full_like(mask, 0.5), mask / (mask + ref))
    zero = mag == 0
    safe = mag + zero.to(mag.dtype)
    phase = torch.complex(spec.real / safe + zero.to(mag.dtype), spec.imag / safe)
    kept = (mag * mask * phase) * valid[:, None, :]
    out = _istft(kept, window, hop, valid, y.shape[-1])
    inside = torch.arange(out.shape[-1], device=y.device)[None, :] < torch.as_tensor(lengths, device=y.device)[:, None]
    return out * inside  # the last frames' windows reach past a clip's end: its padding stays zero


def _istft(spec: torch.Tensor, window: torch.Tensor, hop: int, valid: torch.Tensor, length: int) -> torch.Tensor:
    """librosa.istft(center=True) per clip: overlap-add and window normalization over each clip's own
    frames only (torch.istft would normalize every row by the longest row's frame count)."""
    n_fft = window.shape[0]
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]
    total = n_fft + hop * (spec.shape[-1] - 1)
    fold = functools.partial(F.fold, output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))
    signal = fold(frames)[:, 0, 0]
    used = valid.to(window.dtype)[:, None, :]
    envelope = fold(window.square()[None, :, None] * used)[:, 0, 0]
    nonzero = envelope > torch.finfo(window.dtype).tiny
    signal = torch.where(nonzero, signal / torch.where(nonzero, envelope, torch.ones_like(envelope)), signal)
    return signal[:, n_fft // 2: n_fft // 2 + length]


def estimate_tuning(mag: torch.Tensor, valid: torch.Tensor, sr: float, bins_per_octave: int,
                    resolution: float = 0.01) -> np.ndarray:
    """librosa.estimate_tuning(S=mag) per clip: (B,) tunings in fractions of a bin. ``mag`` (B, F, T)
    is the 2048-point magnitude STFT; frames where ``valid`` is False are left out."""
    s = mag * valid[:, None, :].to(mag.dtype)
    n_fft = 2 * (s.shape[1] - 1)
    freqs = torch.arange(s.shape[1], device=s.device, dtype=torch.float64) * sr / n_fft
    avg = torch.gradient(s, dim=1)[0]
    shift = torch.zeros_like(s)
    a = s[:, 2:] + s[:, :-2] - 2 * s[:, 1:-1]
    b = (s[:, 2:] - s[:, :-2]) / 2
    shift[:, 1:-1] = torch.where(b.abs() >= a.abs(), torch.zeros_like(a), -b / torch.where(a == 0, torch.ones_like(a), a))
    dskew = 0.5 * avg * shift
    x = s * (s > 0.1 * s.amax(1, keepdim=True))
    peak = torch.zeros_like(s, dtype=torch.bool)
    peak[:, 1:-1] = (x[:, 1:-1] > x[:, :-2]) & (x[:, 1:-1] >= x[:, 2:])
    peak[:, -1] = x[:, -1] > x[:, -2]
    peak &= ((freqs >= 150.0) & (freqs < min(4000.0, sr / 2)))[None, :, None]
    bins = torch.arange(s.shape[1], device=s.device, dtype=torch.float64)[None, :, None]
    # librosa computes (bin + shift) * sr / n_fft in float64 and stores it at the spectrogram's precision
    pitch = torch.where(peak, ((bins + shift.double()) * sr / n_fft).to(s.dtype), torch.zeros_like(s))
    mags = torch.where(peak, s + dskew, torch.zeros_like(s))
    edges = torch.as_tensor(np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1), device=s.device)
    out = np.zeros(len(s))
    for i in range(len(s)):
        found = pitch[i] > 0
        if not found.any():
            continue
        ranked = mags[i][found].sort().values
        mid = len(ranked) // 2
        threshold = ranked[mid] if len(ranked) % 2 else (ranked[mid - 1] + ranked[mid]) / 2
        f = pitch[i][found & (mags[i] >= threshold)]
        residual = torch.remainder(bins_per_octave * torch.log2(f / 27.5), 1.0)
        residual = torch.where(residual >= 0.5, residual - 1.0, residual)
        index = (torch.bucketize(residual.double(), edges, right=True) - 1).clamp(0, len(edges) - 2)
        out[i] = float(edges[torch.bincount(index, minlength=len(edges) - 1).argmax()])
    return out


@functools.lru_cache(maxsize=256)
def _cqt_plan(sr: float, hop: int, tuning: float, complex_dtype: torch.dtype):
    """librosa.vqt's plan for chroma_cqt at one tuning: early downsampling, then per octave (top first)
    the sparsified FFT filter basis (numpy), its n_fft and hop, and whether the signal halves after it."""
    import librosa

    n_bins = CQT_OCTAVES * CQT_BINS_PER_OCTAVE
    fmin = librosa.note_to_hz("C1") * 2.0 ** (tuning / CQT_BINS_PER_OCTAVE)
    freqs = librosa.interval_frequencies(n_bins, fmin=fmin, intervals="equal", bins_per_octave=CQT_BINS_PER_OCTAVE)
    logf = np.log2(freqs)
    bpo = np.empty_like(freqs)
    bpo[0], bpo[-1], bpo[1:-1] = 1 / (logf[1] - logf[0]), 1 / (logf[-1] - logf[-2]), 2 / (logf[2:] - logf[:-2])
    alpha = (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)  # librosa.filters._relative_bandwidth
    _, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann", filter_scale=1, gamma=0, alpha=alpha)
    if cutoff > sr / 2:
        raise UnsupportedRate(f"constant-Q bins up to {cutoff:.0f} Hz exceed the Nyquist frequency at sr={sr:g}")
    twos = (hop & -hop).bit_length() - 1
    early = min(max(0, int(np.ceil(np.log2(sr / 2 / cutoff)) - 1) - 1), max(0, twos - CQT_OCTAVES + 1))
    sr, hop = sr / 2 ** early, hop // 2 ** early
    lengths, _ = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann", filter_scale=1, gamma=0, alpha=alpha)
    octaves, my_sr, my_hop = [], sr, hop
    np_dtype = np.complex128 if complex_dtype == torch.complex128 else np.complex64
    for i in range(CQT_OCTAVES):
        rows = slice(n_bins - CQT_BINS_PER_OCTAVE * (i + 1), n_bins - CQT_BINS_PER_OCTAVE * i)
        basis, blen = librosa.filters.wavelet(freqs=freqs[rows], sr=my_sr, filter_scale=1, norm=1, pad_fft=True,
                                              window="hann", gamma=0, alpha=alpha[rows])
        n_fft = basis.shape[1]
        basis = basis * (blen[:, None] / float(n_fft))
        fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
        fft_basis = librosa.util.sparsify_rows(fft_basis, quantile=0.01, dtype=np_dtype).toarray()
        fft_basis *= np.sqrt(sr / my_sr) / np.sqrt(lengths[rows])[:, None]  # vqt's scale=True, folded in
        halves = my_hop % 2 == 0
        octaves.append((fft_basis, n_fft, my_hop, halves))
        if halves:
            my_hop, my_sr = my_hop // 2, my_sr / 2
    return early, tuple(octaves)


def _octave_signals(y: np.ndarray, early: int, octaves) -> list[np.ndarray]:
    """The signal at each octave's rate, resampled exactly as librosa.vqt does it."""
    import librosa

    if early:
        y = librosa.resample(y, orig_sr=2 ** early, target_sr=1, res_type="soxr_hq", scale=True)
    out = []
    for _, _, _, halves in octaves:
        out.append(y)
        if halves:
            y = librosa.resample(y, orig_sr=2, target_sr=1, res_type="soxr_hq", scale=True)
    return out


def chroma_cqt(clips: list[np.ndarray], sr: float, hop: int, tunings: np.ndarray, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """librosa.feature.chroma_cqt(y, sr, hop_length=hop, tuning=t) per clip: (B, 12, T) and mask (B, T)."""
    import librosa

    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    clips = [np.asarray(y, np.float64 if dtype == torch.float64 else np.float32) for y in clips]
    plans = [_cqt_plan(float(sr), hop, float(t), cdtype) for t in tunings]
    signals = [_octave_signals(y, early, octs) for y, (early, octs) in zip(clips, plans)]
    frames = np.array([min(1 + len(sig) // o[2] for sig, o in zip(sigs, octs)) for sigs, (_, octs) in zip(signals, plans)])
    width = int(frames.max())
    n_bins = CQT_OCTAVES * CQT_BINS_PER_OCTAVE
    cqt = torch.zeros(len(clips), n_bins, width, dtype=dtype, device=device)
    for k in range(CQT_OCTAVES):
        rows = slice(n_bins - CQT_BINS_PER_OCTAVE * (k + 1), n_bins - CQT_BINS_PER_OCTAVE * k)
        # clips whose plans share this octave's n_fft and hop go through one batched STFT
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, octs) in enumerate(plans):
            groups.setdefault(octs[k][1:3], []).append(i)
        for (n_fft, o_hop), members in groups.items():
            spec = torch.stft(pad_batch([signals[i][k] for i in members], dtype, device), n_fft, o_hop,
                              window=torch.ones(n_fft, dtype=dtype, device=device),
                              center=True, pad_mode="constant", return_complex=True)
            basis = torch.as_tensor(np.stack([plans[i][1][k][0] for i in members]), dtype=cdtype, device=device)
            response = torch.bmm(basis, spec).abs()[..., :width]
            cqt[members, rows, : response.shape[-1]] = response
    valid = torch.as_tensor(np.arange(width)[None, :] < frames[:, None], device=device)
    to_chroma = torch.as_tensor(librosa.filters.cq_to_chroma(n_bins, bins_per_octave=CQT_BINS_PER_OCTAVE, n_chroma=12),
                                dtype=dtype, device=device)
    chroma = (to_chroma @ cqt) * valid[:, None, :]
    return normalize(chroma, "inf"), valid


def normalize(x: torch.Tensor, norm: str) -> torch.Tensor:
    """librosa.util.normalize along the feature axis (dim 1): 'inf' (max) or '1' (sum); near-zero
    columns are left as they are."""
    length = x.abs().amax(1, keepdim=True) if norm == "inf" else x.abs().sum(1, keepdim=True)
    return x / torch.where(length < torch.finfo(x.dtype).tiny, torch.ones_like(length), length)


def tonnetz_matrix() -> np.ndarray:
    """librosa.feature.tonnetz's projection of 12 chroma onto 6 tonal-centroid axes."""
    dim_map = np.linspace(0, 12, num=12, endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    v = np.multiply.outer(scale, dim_map)
    v[::2] -= 0.5
    return np.array([1, 1, 1, 1, 0.5, 0.5])[:, None] * np.cos(np.pi * v)


def tonnetz(clips: list[np.ndarray], sr: float, hop: int, spectrum: tuple[torch.Tensor, torch.Tensor], device,
            dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """librosa.feature.tonnetz(y, sr, hop_length=hop) per clip, tuning estimated per clip as there
    from ``spectrum``: the clips' :func:`tuning_spectrum` (mag, valid)."""
    tunings = estimate_tuning(*spectrum, sr, CQT_BINS_PER_OCTAVE)
    chroma, mask = chroma_cqt(clips, sr, hop, tunings, device, dtype)
    phi = torch.as_tensor(tonnetz_matrix(), dtype=dtype, device=device)
    return (phi @ normalize(chroma, "1")) * mask[:, None, :], mask
