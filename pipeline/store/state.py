"""Fitted extractor state (Word2Vec vectors and corpus statistics, a tf-idf vocabulary) kept in the store,
beside the dataset it was fitted on: ``<store>/<dataset>/.state/<extractor>-<config12>/``.

State is published whole or not at all: it is fitted into a staging folder and renamed into place with
``_complete.json`` (each file's sha256) written last; readers trust a state folder only once that marker
is there. On an object store the files are uploaded first and the marker object last, and each machine
keeps a local copy under ``$MMFEAT_CACHE/state`` (default ``~/.cache/mmfeat/state``) keyed by the marker's content hash, so a refit state
is fetched anew and a killed upload is completed by the next run of the machine that fitted it.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

from ..errors import MmfeatError
from . import files

MARKER = "_complete.json"


def state_key(extractor) -> str:
    from ..config import canonical_json, identity, sha256_text

    digest = sha256_text(canonical_json({"version": extractor.version, "config": identity(extractor.config)}))
    return f"{extractor.name}-{digest[:12]}"


def with_state(store, dataset: str, extractor, use: Callable[[str], None], can_fit: bool = True) -> None:
    """Call ``use(local_folder)`` (load, or fit and save) with the dataset's state, publishing a fitted one."""
    import pyarrow.fs as pafs

    remote = files.join(store.root, dataset, ".state", state_key(extractor))
    if isinstance(store.fs, pafs.LocalFileSystem):
        _local(remote, use, can_fit, f"{extractor.name} state {dataset}/.state/{state_key(extractor)}")
        return
    base = os.path.join(files.cache_dir(), "state", hashlib.sha256(store.uri.encode()).hexdigest()[:12],
                        dataset, state_key(extractor))
    marker = _marker(store.fs, remote)
    if marker is not None:
        cache = os.path.join(base, hashlib.sha256(json.dumps(marker, sort_keys=True).encode()).hexdigest()[:12])
        if not os.path.isfile(os.path.join(cache, MARKER)):
            _download(store.fs, remote, marker, cache)
        use(cache)
        return
    fitted = os.path.join(base, "fitted-here")  # fitted on this machine, maybe never uploaded (a killed run)
    _local(fitted, use, can_fit, f"{extractor.name} state {dataset}/.state/{state_key(extractor)} in {store.uri}")
    for name in sorted(os.listdir(fitted)):
        if name != MARKER:
            with open(os.path.join(fitted, name), "rb") as src:
                files.write_bytes_atomic(store.fs, files.join(remote, name), src.read())
    with open(os.path.join(fitted, MARKER), "rb") as src:  # last: from now on readers trust the state
        files.write_bytes_atomic(store.fs, files.join(remote, MARKER), src.read())


def _local(folder: str, use: Callable[[str], None], can_fit: bool, name: str) -> None:
    if os.path.isfile(os.path.join(folder, MARKER)):
        damaged = damaged_files(files.LOCAL, folder)
        if damaged:
            raise MmfeatError(f"{name}: {damaged[0]} differs from its marker (damaged). The stored rows stay "
                              "readable; mmfeat fsck --repair removes the state, and the next extract fits it "
                              "anew (a new feature set)")
        use(folder)
        return
    if _legacy(folder):
        use(folder)
        return
    if not can_fit:
        raise MmfeatError(f"no fitted {name}: extract the dataset it is fitted on first (with the same config)")
    with files.staged_local_folder(folder, MARKER) as staging:
        use(staging)
        digests = {n: files.sha256(files.LOCAL, os.path.join(staging, n)) for n in sorted(os.listdir(staging))}
        with open(os.path.join(staging, MARKER), "w") as f:
            json.dump({"files": digests}, f, sort_keys=True)


def damaged_files(fs, folder: str) -> list[str]:
    """The files of a fitted state (a folder with its marker) whose bytes differ from the marker's digests."""
    marker = _marker(fs, folder)
    if marker is None:
        return [MARKER]
    bad = []
    for name, digest in marker["files"].items():
        try:
            same = files.sha256(fs, files.join(folder, name)) == digest
        except OSError:
            same = False
        if not same:
            bad.append(name)
    return bad


def _legacy(folder: str) -> bool:
    """State written before markers existed: whole when its files are there (the extractor checks them)."""
    return os.path.isdir(folder) and any(not n.startswith(".") for n in os.listdir(folder))


def _marker(fs, remote: str) -> dict | None:
    try:
        marker = files.read_json(fs, files.join(remote, MARKER))
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("files"), dict)
    return marker if ok and all(isinstance(v, str) for v in marker["files"].values()) else None


def _download(fs, remote: str, marker: dict, cache: str) -> None:
    with files.staged_local_folder(cache, MARKER) as staging:
        for name, digest in marker["files"].items():
            if os.path.basename(name) != name or name.startswith("."):
                raise MmfeatError(f"{remote}/{MARKER}: names an unsafe file {name!r}")
            with fs.open_input_stream(files.join(remote, name)) as src, open(os.path.join(staging, name), "wb") as dst:
                dst.write(src.read())
            if files.sha256(files.LOCAL, os.path.join(staging, name)) != digest:
                raise MmfeatError(f"{remote}/{name}: its bytes differ from the state's marker (a half-written or "
                                  "damaged state); fit it again")
        with open(os.path.join(staging, MARKER), "w") as f:
            json.dump(marker, f, sort_keys=True)


def state_exists(store, dataset: str, extractor) -> bool:
    remote = files.join(store.root, dataset, ".state", state_key(extractor))
    return files.exists(store.fs, files.join(remote, MARKER)) or bool(files.list_names(store.fs, remote))
