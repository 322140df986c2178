"""The reference: the same frame features computed clip by clip with librosa."""
from __future__ import annotations

import numpy as np

from .deltas import delta_numpy

# Spectral contrast compares band peaks with band valleys in dB, so bins holding only FFT rounding
# noise (a narrowband recording resampled up: its top bands sit ~1e-8 below the clip's peak) would
# give values that depend on how numpy's or torch's FFT rounds. Magnitudes are floored at 1e-6 of
# the clip's peak (-120 dB, far under any recording's noise floor) on both backends, so those bands
# read as flat (contrast 0) instead. Everything else matches librosa.feature.spectral_contrast.
CONTRAST_FLOOR = 1e-6


def floored(mag: np.ndarray) -> np.ndarray:
    return np.maximum(mag, mag.max(initial=0.0) * CONTRAST_FLOOR)



def librosa_frames(y: np.ndarray, sr: int, cfg, features: tuple[str, ...]) -> dict[str, np.ndarray]:
    import librosa

    c = cfg
    stft_kw = dict(n_fft=c.n_fft, hop_length=c.hop_length, center=c.center, pad_mode=c.pad_mode)
    mag = np.abs(librosa.stft(y, **stft_kw))
    out = {}
    if {"mfcc", "mfcc_delta", "mfcc_delta2", "mel"} & set(features):
        mel = librosa.feature.melspectrogram(S=mag ** 2, sr=sr, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax,
                                             htk=c.htk, norm=c.mel_norm)
        mel_db = librosa.power_to_db(mel, top_db=c.top_db)
        if "mel" in features:
            out["mel"] = mel_db
        out["mfcc"] = librosa.feature.mfcc(S=mel_db, n_mfcc=c.n_mfcc)
        for order, name in ((1, "mfcc_delta"), (2, "mfcc_delta2")):
            if name in features:  # librosa.feature.delta(width=9), which also takes clips under 9 frames
                out[name] = delta_numpy(out["mfcc"], order)
    if "chroma" in features:
        out["chroma"] = librosa.feature.chroma_stft(S=mag ** 2, sr=sr, tuning=c.tuning, n_fft=c.n_fft)
    if "contrast" in features:
        out["contrast"] = librosa.feature.spectral_contrast(S=floored(mag), sr=sr, fmin=c.contrast_fmin, n_bands=c.contrast_bands)
    if "stft" in features:
        centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=c.n_fft)
        out["stft"] = np.concatenate([
            centroid, librosa.feature.spectral_bandwidth(S=mag, sr=sr, n_fft=c.n_fft, centroid=centroid),
            librosa.feature.spectral_rolloff(S=mag, sr=sr, n_fft=c.n_fft),
            librosa.feature.spectral_flatness(S=mag, n_fft=c.n_fft)])
    if "zcr" in features:
        out["zcr"] = librosa.feature.zero_crossing_rate(y, frame_length=c.n_fft, hop_length=c.hop_length, center=c.center)
    if "rms" in features:
        out["rms"] = librosa.feature.rms(y=y, frame_length=c.n_fft, hop_length=c.hop_length, center=c.center)
    if "tonnetz" in features:
        out["tonnetz"] = librosa.feature.tonnetz(y=y, sr=sr, hop_length=c.hop_length)
    return out


def classic193(y: np.ndarray, sr: int) -> np.ndarray:
    """The classic 193-dim clip vector: means of 40 MFCC, 12 chroma, 128 mel, 7 contrast, 6 tonnetz."""
    import librosa

    stft = np.abs(librosa.stft(y))
    return np.concatenate([
        np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).T, axis=0),
        np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0),
        np.mean(librosa.feature.melspectrogram(y=y, sr=sr).T, axis=0),
        np.mean(librosa.feature.spectral_contrast(S=floored(stft), sr=sr).T, axis=0),
        np.mean(librosa.feature.tonnetz(y=librosa.effects.harmonic(y), sr=sr).T, axis=0)])
