"""The closed set of reject reasons, each with whether a later run may succeed (``retryable``).

A reject records why one input gave no features. ``retryable`` reasons depend on the world rather
than on the input's bytes (a file not there yet, an I/O error, a decoder not installed):
``--retry-rejects`` re-attempts them. The others are facts about the input; its content hash
changing is what gets it extracted again. Plugins add reasons with :func:`register_reason`.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Reason:
    name: str
    retryable: bool
    doc: str


_REASONS: dict[str, Reason] = {}


def register_reason(name: str, retryable: bool, doc: str) -> Reason:
    """Add a reject reason (plugins); registering the same name twice with another meaning is refused."""
    reason = Reason(name, retryable, doc)
    if name in _REASONS and _REASONS[name] != reason:
        raise ValueError(f"reject reason {name!r} is already registered as {_REASONS[name]}")
    _REASONS[name] = reason
    return reason


for _name, _retry, _doc in (
    ("missing_path", False, "the manifest row gives no path"),
    ("unsafe_path", False, "absolute, '..' or a symlink leaving the dataset root"),
    ("missing_file", True, "the file does not exist (yet)"),
    ("not_a_file", False, "the path is a directory, FIFO, socket or device, not a regular file"),
    ("unusable_path", False, "the operating system cannot use the path (NUL byte, name too long)"),
    ("io_error", True, "reading the file failed (permissions, network filesystem)"),
    ("empty_file", False, "zero-byte file"),
    ("truncated", False, "the file ends before its header says it should"),
    ("not_an_image", False, "no image decoder recognises the file"),
    ("decompression_bomb", False, "the image declares more pixels than allowed"),
    ("image_too_large", False, "decoded or resized image over the pixel budget"),
    ("corrupt_image", False, "the image decoder failed on the data"),
    ("empty_text", False, "text is empty or whitespace only"),
    ("null_text", False, "text is null"),
    ("invalid_utf8", False, "the text file is not UTF-8"),
    ("too_long", False, "text longer than max_chars"),
    ("no_known_words", False, "no word of the text is in the Word2Vec vocabulary"),
    ("no_audio", False, "the file holds no samples"),
    ("bad_header", False, "the audio header is outside the stated limits (rate, channels, frames)"),
    ("corrupt_audio", False, "a decoder that reads the format failed on the data"),
    ("not_audio", False, "the file is an image, a document or text, not audio"),
    ("non_finite", False, "NaN or inf samples"),
    ("silent", False, "RMS below -80 dBFS"),
    ("too_short", False, "shorter than min_duration"),
    ("unsupported_format", True, "no installed decoder reads the format (install ffmpeg and retry)"),
    ("unsupported_rate", False, "a feature is undefined at the clip's sampling rate"),
    ("non_finite_features", False, "the extractor produced NaN or inf features for the input"),
    ("changed_since_planning", True, "the file changed (or was swapped) between hashing and reading: the next run hashes it anew"),
):
    register_reason(_name, _retry, _doc)


# What a user can do when most of a run's rejects have one reason (TooManyRejects says it).
FIXES = {
    "unsafe_path": "paths are read inside the manifest's folder; if you trust this manifest, "
                   "--allow-absolute-paths (Python: allow_absolute=True) reads absolute paths",
    "missing_file": "paths are read relative to the manifest's folder: check one with ls",
    "not_audio": "is the modality right? leave --modality out and mmfeat infers it from the files",
    "not_an_image": "is the modality right? leave --modality out and mmfeat infers it from the files",
    "empty_text": "is the text column right? --columns text=NAME names it",
    "null_text": "is the text column right? --columns text=NAME names it",
    "no_known_words": "the Word2Vec vocabulary comes from another corpus (--fit-on): fit it on this one",
    "unsupported_format": "install a decoder for the format (ffmpeg), then --retry-rejects",
}


def reason(name: str) -> Reason:
    """The registered reason; an unknown one is a bug in the extractor that raised it."""
    try:
        return _REASONS[name]
    except KeyError:
        raise ValueError(f"unknown reject reason {name!r}; registered: {', '.join(sorted(_REASONS))} "
                         "(plugins add theirs with pipeline.rejects.register_reason)") from None
