"""Audio decoding: soundfile, mono mix-down, soxr resampling, and the checks that turn bad clips into rejects."""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

import numpy as np

from ...errors import BadInput

# Validate before you allocate: a header is checked against these before any sample is decoded.
MIN_RATE, MAX_RATE = 1_000, 768_000  # Hz; below 1 kHz a WAV is damaged (1 Hz resampled to 22 kHz is 22,050x the bytes)
MAX_CHANNELS = 64
# Memory per clip is bounded before anything is decoded (measured: ~110 bytes of peak memory per sample
# that the features are computed over at once): decoded samples over all channels, before and after
# resampling, at most MAX_SAMPLES (256 MiB of float32); and a clip whose features are computed whole
# (no max_duration crop, no long_clips=split windows) at most MAX_WHOLE_SAMPLES after resampling
# (6.3 minutes at 22,050 Hz, under 1 GB of peak memory).
MAX_SAMPLES = 1 << 26
MAX_WHOLE_SAMPLES = 1 << 23


def _wav_truncated(path: str) -> str | None:
    """For RIFF/WAVE: the data chunk declares more bytes than the file holds -> a message."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return "no data chunk (header only)"
            cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                available = size - f.tell()
                if length != 0xFFFFFFFF and length > available:
                    return f"header declares {length} data bytes, file holds {available}"
                return None
            f.seek(length + (length & 1), os.SEEK_CUR)


_SNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"ID3", b"\xff\xfb", b"\xff\xf3",
                  b"\xff\xf2")


def _sndfile_container(path: str) -> bool:
    """Whether the file starts like a container libsndfile decodes (WAV, FLAC, OGG, AIFF, AU, MP3)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return any(head.startswith(m) for m in _SNDFILE_MAGIC)


_NOT_AUDIO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"{", b"[")


def _not_audio(path: str) -> str | None:
    """What a file that no audio decoder reads is instead (an image, a document, text), or None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if any(head.startswith(m) for m in _NOT_AUDIO_MAGIC[:7]):
        return "an image, document or archive"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError:
            pass
    return None


def _audioread(path: str, soundfile_error: str, check=None) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot read (AAC/M4A, WMA, ...) through audioread, as librosa.load falls
    back to it: ffmpeg (or GStreamer/Core Audio) when one is installed. (frames, channels) float32."""
    import audioread

    try:
        with audioread.audio_open(path, backends=audioread.available_backends()) as f:
            rate, channels = f.samplerate, f.channels
            if check is not None:  # the header's rate, channels and duration, before a byte of PCM is held
                check(rate, channels, 0)
                check(rate, channels, int((f.duration or 0) * rate))
            pcm = b"".join(f)
    except (audioread.DecodeError, OSError, EOFError) as exc:
        detail = f"soundfile: {soundfile_error}; audioread: {type(exc).__name__} {exc}"
        kind = _not_audio(path)
        if kind and not _sndfile_container(path):
            raise BadInput("not_audio", f"the file is {kind}, not audio") from None
        if _sndfile_container(path):  # libsndfile reads this container: the bytes are what is wrong
            raise BadInput("corrupt_audio", detail) from None
        if isinstance(exc, audioread.NoBackendError):
            raise BadInput("unsupported_format", detail + " (no ffmpeg found: install it to decode this format)") from None
        raise BadInput("corrupt_audio", detail) from None
    samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0  # librosa's buf_to_float of 16-bit PCM
    return samples[: len(samples) // channels * channels].reshape(-1, channels), rate


def _check_header(rate: int, channels: int, frames: int, sr: int | None, max_duration: float | None,
                  windowed: bool = False) -> None:
    """Refuse headers outside the stated limits before decoding or resampling allocates anything."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadInput("bad_header", f"sampling rate {rate} Hz outside [{MIN_RATE}, {MAX_RATE}]")
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadInput("bad_header", f"{channels} channels outside [1, {MAX_CHANNELS}]")
    kept = frames if max_duration is None else min(frames, int(max_duration * rate) + 1)
    resampled = kept * (sr or rate) / rate
    if kept * channels > MAX_SAMPLES or resampled > MAX_SAMPLES:
        raise BadInput("bad_header", f"{frames} frames x {channels} channels at {rate} Hz exceeds the per-clip "
                                     f"budget of {MAX_SAMPLES} decoded samples (set max_duration to crop long clips)")
    if resampled > MAX_WHOLE_SAMPLES and not windowed:
        raise BadInput("bad_header", f"{resampled / (sr or rate):.0f} s of audio exceeds the {MAX_WHOLE_SAMPLES} "
                                     f"samples computed whole per clip: set max_duration to crop long clips, or "
                                     "long_clips=split to cut them into windows")


class Clip(NamedTuple):
    samples: np.ndarray  # mono float32
    rate: int
    padded_from: float | None  # seconds of real audio when padded up to min_duration, else None


def load_clip(path: str, sr: int | None, min_duration: float, pad_short: bool, max_duration: float | None,
              reject_silence: bool, windowed: bool = False) -> Clip:
    """Mono float32 samples at ``sr`` (native rate when None), as ``librosa.load`` would give them."""
    import soundfile as sf
    import soxr

    if not os.path.exists(path):
        raise BadInput("missing_file", f"{path} does not exist")
    if os.path.getsize(path) == 0:
        raise BadInput("empty_file", "zero-byte file")
    problem = _wav_truncated(path)
    if problem:
        raise BadInput("truncated", problem)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        y, native = _audioread(path, str(exc), lambda r, c, n: _check_header(r, c, n, sr, max_duration, windowed))
        _check_header(native, y.shape[1], len(y), sr, max_duration, windowed)
        declared = 0
    else:
        declared = info.frames
        _check_header(info.samplerate, info.channels, declared, sr, max_duration, windowed)
        wanted = declared if max_duration is None else min(declared, int(max_duration * info.samplerate) + 1)
        try:
            y, native = sf.read(path, frames=wanted, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            # libsndfile knew the format from its header, so the data is what it cannot read.
            raise BadInput("corrupt_audio", f"{info.format} header read, data undecodable: {exc}") from None
        declared = min(declared, wanted)
    if len(y) == 0:
        raise BadInput("no_audio", "the file holds no samples (header only)")
    if declared > 0 and declared != len(y):
        raise BadInput("truncated", f"header declares {declared} frames, decoded {len(y)}")
    if not np.isfinite(y).all():
        raise BadInput("non_finite", f"{int((~np.isfinite(y)).sum())} NaN or inf samples", stage="validate")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if sr is not None and native != sr:
        y = soxr.resample(y, native, sr, quality="soxr_hq").astype(np.float32)
    rate = sr or native
    if max_duration is not None and len(y) > int(max_duration * rate):
        y = y[: int(max_duration * rate)]
    padded_from = None
    if len(y) < int(min_duration * rate):
        if not pad_short:
            raise BadInput("too_short", f"{len(y) / rate:.3f} s < min_duration={min_duration} s", stage="validate")
        padded_from = len(y) / rate
        y = np.pad(y, (0, int(min_duration * rate) - len(y)))
    if reject_silence and float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) < 1e-4:
        raise BadInput("silent", "RMS below -80 dBFS", stage="validate")
    return Clip(np.ascontiguousarray(y, dtype=np.float32), rate, padded_from)
