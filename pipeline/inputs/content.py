"""Content identity of a dataset's items: sha256 of each text or file, reusing the last run's hash
when a file's size and mtime are unchanged (a no-op rerun stats files, it does not read them).

Items whose file cannot be used (unsafe path, missing, not a regular file) get a null content and
the reason, decided here once, before any decoder opens anything.
"""
from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..store.items import item_keys
from .dataset import Dataset, resolve_paths, text_hash

_CHUNK = 1 << 20


def sha256_of_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def build_items(dataset: Dataset, previous: pa.Table, threads: int = 8, rehash: bool = False) -> pa.Table:
    """The dataset's items with ``content``, ``size``, ``mtime_ns``, ``input`` (absolute path or
    the text) and, for unusable items, ``reason``/``message`` (resolve-stage rejects). A file whose size and
    time are unchanged keeps its last hash, unless ``rehash`` (a file edited with its time restored)."""
    table = dataset.table
    sources = table["source"].to_pylist()
    n = len(sources)
    reason: list[str | None] = [None] * n
    message: list[str | None] = [None] * n
    size = np.full(n, -1, np.int64)
    mtime = np.full(n, -1, np.int64)
    if dataset.kind == "text":
        inputs = sources
        content = [None if t is None else hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in sources]
        stored_source = text_hash(sources)
    else:
        inputs, bad = resolve_paths(dataset, sources)
        for i, err in bad.items():
            reason[i], message[i] = err.reason, err.message
        content = [None] * n
        ids = table["id"].to_pylist()
        cached = {} if rehash else _previous_stats(previous)  # rehash: every file read again
        to_hash = []
        for i, path in enumerate(inputs):
            if path is None:
                continue
            st, why = _stat(path)
            if why:
                reason[i], message[i] = why
                continue
            size[i], mtime[i] = st.st_size, st.st_mtime_ns
            hit = cached.get((ids[i], sources[i]))
            if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns and hit[2]:
                content[i] = hit[2]
            else:
                to_hash.append(i)
        with ThreadPoolExecutor(max_workers=threads) as pool:  # hashlib releases the GIL on large reads
            for i, (digest, why) in zip(to_hash, pool.map(_hash_or_reason, [inputs[i] for i in to_hash])):
                content[i] = digest
                if why:
                    reason[i], message[i] = why
        stored_source = sources
    valid = size >= 0
    return pa.table({"id": table["id"], "content": pa.array(content, pa.string()),
                     "assigned_split": _assigned_splits(table, previous),
                     "preview": pa.array([t[:PREVIEW_CHARS] if t else None for t in sources] if dataset.kind == "text"
                                         else [None] * n, pa.string()),
                     "source": pa.array(stored_source, pa.string()), "label": table["label"],
                     "split": table["split"], "meta": table["meta"],
                     "size": pa.array(size, pa.int64(), mask=~valid), "mtime_ns": pa.array(mtime, pa.int64(), mask=~valid),
                     "input": pa.array(inputs, pa.string()), "reason": pa.array(reason, pa.string()),
                     "message": pa.array(message, pa.string())})


PREVIEW_CHARS = 300  # of each text kept in the items table (errors, neighbours, audits read it)


def _assigned_splits(table: pa.Table, previous: pa.Table) -> pa.Array:
    """The store's split of each item whose manifest gives none: kept from the last run, or assigned once
    (stratified by label, in hash order: pipeline/splits.py)."""
    from ..splits import assign_items

    kept = previous.filter(pc.is_valid(previous["assigned_split"])) if "assigned_split" in previous.column_names \
        else previous.slice(0, 0)
    before = dict(zip(kept["id"].to_pylist(), kept["assigned_split"].to_pylist())) if kept.num_rows else {}
    return pa.array(assign_items(table["id"].to_pylist(), table["label"].to_pylist(), table["split"].to_pylist(),
                                 before), pa.string())


def _previous_stats(previous: pa.Table) -> dict[tuple, tuple]:
    if previous.num_rows == 0:
        return {}
    cols = [previous[c].to_pylist() for c in ("id", "source", "size", "mtime_ns", "content")]
    return {(i, s): (sz, mt, c) for i, s, sz, mt, c in zip(*cols)}


def _stat(path: str):
    """(stat result, None) for a regular file, else (None, (reason, message))."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, ("missing_file", f"{path} does not exist")
    except PermissionError as exc:
        return None, ("io_error", f"{path}: {exc.strerror}")
    except (ValueError, OSError) as exc:  # NUL byte, name too long, a loop of symlinks
        return None, ("unusable_path", f"{path!r}: {getattr(exc, 'strerror', None) or exc}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket or device)"
        return None, ("not_a_file", f"{path} is {kind}")
    return st, None


def _hash_or_reason(path: str):
    try:
        return sha256_of_file(path), None
    except FileNotFoundError:
        return None, ("missing_file", f"{path} disappeared while being hashed")
    except OSError as exc:
        return None, ("io_error", f"{path}: {exc.strerror or exc}")


def manifest_digest(source: str, items: pa.Table) -> str:
    """sha256 of the manifest file's bytes, or of the listing (ids, contents, labels, splits) of a folder."""
    if os.path.isfile(source):
        return sha256_of_file(source)
    h = hashlib.sha256()
    for column in ("id", "content", "label", "split"):
        h.update("\n".join(map(str, items[column].to_pylist())).encode("utf-8", "surrogatepass"))
    return h.hexdigest()
