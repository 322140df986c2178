"""The ``spectral`` extractor's config: librosa's parameters, the feature lists and their widths."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...config import check_choice, option

FEATURES = ("mfcc", "mfcc_delta", "mfcc_delta2", "chroma", "mel", "contrast", "stft", "zcr", "rms", "tonnetz")
# The default, measured on spoken keywords (speaker-disjoint; linear head, README): MFCC with its Δ and ΔΔ,
# chroma, contrast, spectral shape, ZCR, RMS: 89.7%. The former default, with 128 mel bands (three
# quarters of its 1384 values) and no deltas: 83.7%; with deltas added, 85.7% (a scikit-learn probe): mel bands dilute
# the vector (MFCCs are their decorrelated summary; `features=...,mel` adds them back).
STATS = ("mean", "std", "min", "max", "p10", "p25", "p50", "p75", "p90")
DEFAULT_FEATURES = ("mfcc", "mfcc_delta", "mfcc_delta2", "chroma", "contrast", "stft", "zcr", "rms")
# preset=speech: the smallest vector as good on spoken words (89.3%, 536 values vs 680).
SPEECH_FEATURES = ("mfcc", "mfcc_delta", "mfcc_delta2", "contrast")


@dataclasses.dataclass(frozen=True)
class SpectralConfig:
    """Audio features with librosa's parameters; frames pooled per clip with ``stats``.

    ``features``: mfcc (and its ``mfcc_delta``, ``mfcc_delta2``), chroma (STFT, fixed ``tuning``), mel (dB), contrast, stft (centroid,
    bandwidth, roll-off, flatness), zcr, rms, tonnetz (constant-Q chroma, tuning estimated per clip).
    ``stats``: mean, std, min, max, p10, p25, p50, p75, p90. ``preset=classic193`` is the classic
    193-dim recipe (its own fixed parameters: 2048/512 STFT, 128 mels, 40 MFCC, frame means);
    ``preset=speech`` takes MFCC, Δ, ΔΔ and contrast only (as good on spoken words, smaller).
    ``sr=None`` keeps each clip's native rate. Clips longer than ``max_duration`` seconds are cropped
    (``long_clips=crop``) or split (``split``) into windows of ``max_duration`` every ``window_hop``
    seconds (default: back to back; the last window ends at the clip's end), one row per window
    with id ``<id>#<k>`` and ``clip``, ``start_s``, ``end_s`` in the row's meta.
    """

    # 2: contrast floored at 1e-6 of the clip peak; 3: time-binned pooling (time_bins). (Δ/ΔΔ features and
    # preset=speech are new configs, not new values of old ones: no version bump.)
    extractor_version: ClassVar[str] = "3"

    features: tuple[str, ...] = option(
        DEFAULT_FEATURES, "mfcc, mfcc_delta, mfcc_delta2 (Δ, ΔΔ as librosa.feature.delta), chroma, mel, contrast, "
        "stft, zcr, rms, tonnetz")
    stats: tuple[str, ...] = option(
        ("mean", "std"), "pooling over frames: mean, std, min, max, p10, p25, p50, p75, p90")
    # measured: spoken keywords 68.3% -> 83.7% (whole clip only vs + thirds), see README
    time_bins: int = option(
        3, "also pool each of this many contiguous time bins (3 for spoken words: +16 points on keywords)")
    preset: str | None = option(
        None, "speech: MFCC + Δ + ΔΔ + contrast (best on spoken words); classic193: the classic 193-d recipe (means "
        "of 40 MFCC, chroma, 128 mel, contrast, tonnetz)")
    backend: str = option("torch", "torch (batched, CPU or GPU) or librosa (a process pool)")
    sr: int | None = option(22050, "resample to this rate (none keeps each clip's own)")
    n_fft: int = option(2048, "STFT window")
    hop_length: int = option(512, "STFT hop")
    n_mels: int = option(128, "mel bands")
    n_mfcc: int = option(20, "MFCC coefficients")
    fmin: float = option(0.0, "lowest mel frequency (Hz)")
    fmax: float | None = option(None, "highest mel frequency (Hz, default sr/2)")
    htk: bool = option(False, "HTK mel scale instead of Slaney's")
    mel_norm: str | None = option("slaney", "mel filter normalization (slaney or none)")
    center: bool = option(True, "centre frames on their time (pad the signal)")
    pad_mode: str = option("constant", "padding when centred: constant or reflect")
    top_db: float | None = option(80.0, "dB floor below each clip's peak for mel dB (none: no floor)")
    tuning: float = option(0.0, "chroma tuning in fractions of a bin (tonnetz and classic193 estimate it per clip)")
    contrast_fmin: float = option(200.0, "lowest spectral contrast band edge (Hz)")
    contrast_bands: int = option(6, "spectral contrast bands")
    min_duration: float = option(0.0, "shorter clips are rejected (too_short) or padded (pad_short)")
    pad_short: bool = option(False, "zero-pad clips shorter than min_duration (flagged padded_from_s in meta)")
    max_duration: float | None = option(None, "seconds kept of each clip (crop), or the window length (split)")
    long_clips: str = option("crop", "crop, or split into windows of max_duration (one row each)")
    window_hop: float | None = option(
        None, "seconds between window starts with long_clips=split (default back to back)")
    reject_silence: bool = option(False, "reject clips under -80 dBFS RMS (silent)")
    frames: bool = option(False, "also store the frame sequences (a list column)")
    precision: str = option("float32", "float32 or float64 computation")
    batch_size: int = option(64, "clips per batch on the torch backend", runtime=True)
    num_workers: int | None = option(None, "decode (torch) or feature (librosa) worker processes", runtime=True)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", runtime=True)
    threads: int | None = option(None, "torch threads (default: as torch is set: OMP_NUM_THREADS, "
        "torch.set_num_threads)", runtime=True)

    def __post_init__(self):
        check_choice("backend", self.backend, ("torch", "librosa"))
        check_choice("precision", self.precision, ("float32", "float64"))
        check_choice("preset", self.preset, (None, "classic193", "speech"))
        if self.preset == "speech":
            if tuple(self.features) not in (DEFAULT_FEATURES, SPEECH_FEATURES):
                raise ValueError("preset=speech chooses the features (mfcc, Δ, ΔΔ, contrast); leave features unset")
            object.__setattr__(self, "features", SPEECH_FEATURES)  # frozen: the preset fills in its choice
        check_choice("pad_mode", self.pad_mode, ("constant", "reflect"))
        check_choice("long_clips", self.long_clips, ("crop", "split"))
        if self.long_clips == "split" and self.max_duration is None:
            raise ValueError("long_clips=split needs max_duration (the window length in seconds)")
        if self.max_duration is not None and self.max_duration <= 0 or self.window_hop is not None and self.window_hop <= 0:
            raise ValueError("max_duration and window_hop must be > 0 seconds")
        for f in self.features:
            check_choice("feature", f, FEATURES)
        for s in self.stats:
            check_choice("stat", s, STATS)
        if not self.features or not self.stats:
            raise ValueError("features and stats must not be empty")
        if self.time_bins < 1 or self.time_bins > 64:
            raise ValueError("time_bins must be in 1..64")
        if "tonnetz" in self.features and not self.center:
            raise ValueError("tonnetz needs center=True (its constant-Q frames are centred, as librosa's are)")
        if self.preset == "classic193" and self.sr != 22050:
            raise ValueError("preset=classic193 needs sr=22050 (the recipe loads audio at librosa's default rate)")
        if self.preset == "classic193" and self.frames:
            raise ValueError("frames=true stores frame sequences of `features`; a preset has its own, fixed vector")
        if self.n_fft < 16 or self.hop_length < 1 or self.n_mels < 1 or not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError("need n_fft >= 16, hop_length >= 1, 1 <= n_mfcc <= n_mels")


def frame_dims(cfg: SpectralConfig) -> dict[str, int]:
    return {"mfcc": cfg.n_mfcc, "mfcc_delta": cfg.n_mfcc, "mfcc_delta2": cfg.n_mfcc, "chroma": 12, "mel": cfg.n_mels, "contrast": cfg.contrast_bands + 1, "stft": 4,
            "zcr": 1, "rms": 1, "tonnetz": 6}
