"""What both text extractors share: reading texts (inline or from files) and refusing bad ones."""
from __future__ import annotations

import re
import unicodedata

from ...errors import BadInput
from ...registry import ItemBatch, Reject

_TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def load_texts(batch: ItemBatch, max_chars: int) -> tuple[list[int], list[str], list[Reject]]:
    """(indices of usable items, their texts, rejects). Files are read as strict UTF-8."""
    keep, texts, rejects = [], [], []
    for i, source in enumerate(batch.sources):
        try:
            text = read_text(source, batch.kind, max_chars)
        except BadInput as err:
            rejects.append(Reject.from_error(i, err))
            continue
        keep.append(i)
        texts.append(text)
    return keep, texts, rejects


def read_text(source: str | None, kind: str, max_chars: int) -> str:
    """One item's text (inline, or a file read as strict UTF-8); a bad one raises ``BadInput``."""
    text = _read(source, max_chars) if kind == "path" else source
    if text is None:
        raise BadInput("null_text", "text is null", stage="validate")
    if not text.strip():
        raise BadInput("empty_text", "text is empty or whitespace only", stage="validate")
    if len(text) > max_chars:
        raise BadInput("too_long", f"{len(text)} characters > max_chars={max_chars}", stage="validate")
    return text


def _read(path: str, max_chars: int) -> str:
    """A text file as strict UTF-8; one larger than ``max_chars`` could hold (4 bytes a character) is refused
    by its size, before a byte is read, and nothing but a regular file is opened."""
    import os
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadInput("missing_file", f"{path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput("not_a_file", f"{path} is not a regular file")
    if info.st_size > 4 * max_chars:
        raise BadInput("too_long", f"{info.st_size} bytes > 4 x max_chars={max_chars}", stage="validate")
    try:
        with open(path, "rb") as f:
            data = f.read(4 * max_chars + 1)
    except FileNotFoundError:
        raise BadInput("missing_file", f"{path} does not exist") from None
    except IsADirectoryError:
        raise BadInput("not_a_file", f"{path} is a directory") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput("invalid_utf8", str(exc)) from None


def tokenize_words(text: str) -> list[str]:
    """The Word2Vec tokenization: NFKC, casefold, words of letters/digits (inner apostrophes kept).

    Punctuation and underscores split words and are dropped.
    """
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).casefold())
