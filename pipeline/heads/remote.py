"""Heads kept in an object store (S3): each run uploaded file by file, then ``latest.json`` pointing at
it written last (one PUT, atomic on S3): a reader that follows ``latest.json`` never sees half a run.

    <store>/_heads/<name>/runs/<run>/   head.safetensors, head.json, report.md, pictures
    <store>/_heads/<name>/latest.json   {"run": "<run>"}

Heads train and load from local folders; ``fetch`` copies a run into the local cache once.
"""
from __future__ import annotations

import os
import shutil

from ..errors import MmfeatError
from ..store import FeatureStore, files
from ..store.catalog import check_name


def is_remote(store: FeatureStore) -> bool:
    return "://" in store.uri


def heads_root(store: FeatureStore) -> str:
    """``<store>/_heads``; for an object store, ``./mmfeat-heads/_heads``: heads train in local folders and
    each run is then published to ``<store>/_heads`` (:func:`publish`)."""
    base = store.root if not is_remote(store) else os.path.abspath("mmfeat-heads")
    return os.path.join(base, "_heads")


def publish(store: FeatureStore, run_dir: str, name: str) -> str:
    """Upload a local run folder as ``<store>/_heads/<name>/runs/<run>`` and make it the latest."""
    base = files.join(store.root, "_heads", check_name("head", name))
    run = os.path.basename(os.path.realpath(run_dir))
    target = files.join(base, "runs", run)
    store.fs.create_dir(target, recursive=True)
    for entry in sorted(os.listdir(run_dir)):
        with open(os.path.join(run_dir, entry), "rb") as f:
            files.write_bytes_atomic(store.fs, files.join(target, entry), f.read())
    files.write_json_atomic(store.fs, files.join(base, "latest.json"), {"run": run})
    return target


def names(store: FeatureStore) -> list[str]:
    """Heads with a published latest run."""
    root = files.join(store.root, "_heads")
    return [n for n in files.list_names(store.fs, root) if files.exists(store.fs, files.join(root, n, "latest.json"))]


def fetch(store: FeatureStore, name: str) -> str:
    """The local copy of head ``name``'s latest run (downloaded once per run into the cache)."""
    base = files.join(store.root, "_heads", check_name("head", name))
    try:
        run = files.read_json(store.fs, files.join(base, "latest.json"))["run"]
        check_name("run", run)
    except (OSError, ValueError, KeyError, TypeError):
        raise MmfeatError(f"no head {name!r} in {store.uri} (no readable _heads/{name}/latest.json)") from None
    local = os.path.join(files.cache_dir(), "heads", store.root.replace("/", "_"), name, run)
    if os.path.isfile(os.path.join(local, "head.json")):
        return local
    with files.staged_local_folder(local, "head.json") as staging:
        source = files.join(base, "runs", run)
        for entry in files.list_names(store.fs, source):
            with store.fs.open_input_stream(files.join(source, entry)) as src, \
                    open(os.path.join(staging, entry), "wb") as dst:
                shutil.copyfileobj(src, dst)
    return local
