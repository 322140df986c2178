"""Filesystem helpers over pyarrow filesystems (local paths and URLs such as s3://)."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Any, Iterator

import pyarrow.fs as pafs


LOCAL = pafs.LocalFileSystem()  # local folders (heads, fitted state, caches)


def cache_dir() -> str:
    """This machine's cache of models, heads and fitted state: $MMFEAT_CACHE, else ~/.cache/mmfeat."""
    return os.environ.get("MMFEAT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mmfeat")


def open_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path) for a local path or a pyarrow/fsspec-style URL."""
    if "://" in root:
        from ..errors import StoreError

        try:
            fs, path = pafs.FileSystem.from_uri(root)
            fs.get_file_info(path)  # reach it now: one clear line instead of a traceback mid-run
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot reach the store {root}: {first}") from None
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(root)


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_names(fs: pafs.FileSystem, path: str, kind: pafs.FileType | None = None) -> list[str]:
    """Names (not paths) directly under ``path``; empty when it does not exist."""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if kind is None or i.type == kind)


def list_entries(fs: pafs.FileSystem, path: str) -> dict[str, str]:
    """Name -> "file", "dir" or "other" (a symlink on a local disk counts as other: never trusted)."""
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        kind = {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type, "other")
        if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(info.path):
            kind = "other"
        out[info.base_name] = kind
    return out


def fsync(fs: pafs.FileSystem, path: str) -> None:
    """Flush a local file or directory to the disk (a commit must survive a power cut); object
    stores persist a completed write by themselves."""
    if isinstance(fs, pafs.LocalFileSystem):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staging_path(directory: str, suffix: str) -> str:
    """A hidden, unique name in ``directory``: readers never look at dot-files."""
    return join(directory, f".staging-{uuid.uuid4().hex}{suffix}")


@contextlib.contextmanager
def staged_output(fs: pafs.FileSystem, path: str, suffix: str = ".tmp") -> Iterator[str]:
    """The one way a file is written: the caller writes the yielded staging name (hidden, unique, beside
    ``path``); then it is fsync'd, renamed into place and its folder fsync'd. On failure it is removed, so
    a kill or a full disk leaves nothing a reader looks at (readers never look at dot-files)."""
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    tmp = staging_path(directory, suffix)
    try:
        yield tmp
        fsync(fs, tmp)
        fs.move(tmp, path)
    except BaseException:
        delete_if_exists(fs, tmp)
        raise
    fsync(fs, directory)


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with staged_output(fs, path) as tmp:
        with fs.open_output_stream(tmp) as out:
            out.write(data)


def write_parquet_atomic(fs: pafs.FileSystem, path: str, table, **options: Any) -> dict[str, Any]:
    """Write to a hidden staging name, check the row count in the footer, rename into place; returns the
    file's size and sha256 (what a done marker records, and fsck checks)."""
    import pyarrow.parquet as pq

    from ..errors import StoreError

    with staged_output(fs, path, ".parquet") as tmp:
        pq.write_table(table, tmp, filesystem=fs, **options)
        written = pq.ParquetFile(fs.open_input_file(tmp)).metadata.num_rows
        if written != table.num_rows:
            raise StoreError(f"{path}: wrote {written} rows, expected {table.num_rows}")
        digest = {"bytes": fs.get_file_info(tmp).size, "sha256": sha256(fs, tmp)}
    return digest


def sha256(fs: pafs.FileSystem, path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while True:
            block = f.read(1 << 22)
            if not block:
                return h.hexdigest()
            h.update(block)


def file_infos(fs: pafs.FileSystem, path: str) -> dict[str, tuple[str, int, int]]:
    """Name -> (kind, size, mtime_ns) of the entries directly under ``path`` (kind as :func:`list_entries`)."""
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        kind = {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type, "other")
        if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(info.path):
            kind = "other"
        out[info.base_name] = (kind, info.size or 0, info.mtime_ns or 0)
    return out


def delete_if_exists(fs: pafs.FileSystem, path: str) -> bool:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    else:
        fs.delete_file(path)
    return True


def write_json_atomic(fs: pafs.FileSystem, path: str, obj: Any) -> None:
    write_bytes_atomic(fs, path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def read_json(fs: pafs.FileSystem, path: str) -> Any:
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode("utf-8"))


@contextlib.contextmanager
def staged_local_folder(target: str, marker: str) -> Iterator[str]:
    """A local staging folder beside ``target``, filled by the caller, its files fsync'd, then renamed into
    place (atomic). Another process that got there first wins: its folder (holding ``marker``) is kept,
    ours dropped."""
    import shutil
    import tempfile

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        yield staging
        for name in os.listdir(staging):
            fsync(LOCAL, os.path.join(staging, name))
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.exists(os.path.join(target, marker)):
                raise
        fsync(LOCAL, parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def replaced_local_folder(target: str) -> Iterator[str]:
    """A staging folder that replaces ``target`` when the caller is done: the old folder is renamed aside
    and removed only once the new one is in place (a failure leaves the old one whole)."""
    import shutil
    import tempfile

    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    old = None
    try:
        yield staging
        for name in os.listdir(staging):
            if os.path.isfile(os.path.join(staging, name)):
                fsync(LOCAL, os.path.join(staging, name))
        if os.path.lexists(target):
            old = os.path.join(parent, f".staging-old-{uuid.uuid4().hex}")
            os.rename(target, old)
        os.rename(staging, target)
        fsync(LOCAL, parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
