"""The modality of a source when ``--modality`` is not given: a manifest's text column says text; otherwise
the files' types decide, when one modality holds (nearly) all of them."""
from __future__ import annotations

import os
from collections import Counter

from ..errors import MmfeatError
from .layout import glob_root, is_glob

EXTENSIONS = {
    "image": {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"},
    "audio": {".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".aiff", ".aif", ".au", ".wma"},
    "text": {".txt", ".md", ".text"},
}
_SAMPLE = 5000  # files looked at: enough to tell, cheap on any folder


def infer_modality(source: str, columns: dict[str, str], no_header: bool) -> str:
    """image, text or audio, or one line saying why it cannot tell and to pass --modality."""
    if os.path.isfile(source):
        from .dataset import read_source

        table = read_source(source, columns, no_header)
        if "text" in table.column_names and "path" not in table.column_names:
            return "text"
        names = [p for p in table["path"].to_pylist()[:_SAMPLE] if p]
    else:
        names = _listing(source)
    counts = Counter(m for name in names for m, exts in EXTENSIONS.items() if os.path.splitext(name)[1].lower() in exts)
    media = sum(counts.values())
    if media and counts.most_common(1)[0][1] >= 0.9 * media:
        return counts.most_common(1)[0][0]
    seen = ", ".join(f"{n} {m}" for m, n in counts.most_common()) or "no image, audio or text files"
    raise MmfeatError(f"{source}: cannot tell the modality from the files ({seen} among {len(names)} looked at); "
                      "pass --modality image|text|audio")


def _listing(source: str) -> list[str]:
    import glob
    import itertools

    if is_glob(source) and not os.path.exists(source):
        return list(itertools.islice(glob.iglob(source, recursive=True), _SAMPLE))
    if not os.path.isdir(source):
        raise MmfeatError(f"dataset source not found: {source if not is_glob(source) else glob_root(source)}")
    found = []
    for _, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [n for n in names if not n.startswith(".")]
        if len(found) >= _SAMPLE:
            break
    return found
