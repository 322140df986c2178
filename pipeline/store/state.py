"""Fitted extractor state (Word2Vec vectors and corpus statistics) kept in the store, beside the dataset
it was fitted on: ``<store>/<dataset>/.state/<extractor>-<config12>/``. Extractors read and write a local
folder; on an object store that folder is a cache (``~/.cache/mmfeat/state``) synced with the store,
so every worker of a cluster finds the state the first run fitted."""
from __future__ import annotations

import hashlib
import os
from typing import Callable

from . import files


def state_key(extractor) -> str:
    from ..config import canonical_json, identity, sha256_text

    digest = sha256_text(canonical_json({"version": extractor.version, "config": identity(extractor.config)}))
    return f"{extractor.name}-{digest[:12]}"


def with_state(store, dataset: str, extractor, use: Callable[[str], None]) -> None:
    """Call ``use(local_folder)`` (load, or fit and save) and keep the store's copy in step."""
    import pyarrow.fs as pafs

    remote = files.join(store.root, dataset, ".state", state_key(extractor))
    if isinstance(store.fs, pafs.LocalFileSystem):
        use(remote)
        return
    cache = os.path.join(os.path.expanduser("~/.cache/mmfeat/state"),
                         hashlib.sha256(store.uri.encode()).hexdigest()[:12], dataset, state_key(extractor))
    stored = files.list_names(store.fs, remote)
    if stored and not os.path.isdir(cache):
        os.makedirs(cache)
        for name in stored:
            with store.fs.open_input_stream(files.join(remote, name)) as src, open(os.path.join(cache, name), "wb") as dst:
                dst.write(src.read())
    use(cache)
    if not stored and os.path.isdir(cache):
        for name in sorted(os.listdir(cache)):
            with open(os.path.join(cache, name), "rb") as src:
                files.write_bytes_atomic(store.fs, files.join(remote, name), src.read())


def state_exists(store, dataset: str, extractor) -> bool:
    return bool(files.list_names(store.fs, files.join(store.root, dataset, ".state", state_key(extractor))))
