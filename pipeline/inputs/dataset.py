"""Datasets: manifests (CSV, JSONL, Parquet) or folder layouts, held as Arrow tables.

A dataset table has columns ``id``, ``source`` (a path relative to the root, or the text itself),
``label`` and ``split`` (nullable strings). Paths are resolved and checked only when items are
about to be read (``resolve_paths``), so a manifest of millions of rows costs no file-system calls.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInput, MmfeatError
from ..store.catalog import check_name
from ..store.schema import META_TYPE
from .layout import SPLIT_ALIASES, SPLITS, default_dataset_name, is_glob, source_root
from .columns import mapped
from .manifests import read_manifest
from .sources import labels_from_names, sample, scan_folder, scan_glob

_TRAVERSAL = r"(^|[/\\])\.\.([/\\]|$)"


@dataclasses.dataclass
class Dataset:
    """A dataset: its name, root directory, and the item table."""

    name: str
    root: str
    table: pa.Table
    kind: str  # "path" or "text"
    allow_absolute: bool = False

    def __len__(self) -> int:
        return self.table.num_rows


def load_dataset(source: str, name: str | None = None, allow_absolute: bool = False,
                 label_from_name: str | None = None, limit: int | None = None,
                 columns: dict[str, str] | None = None, no_header: bool = False) -> Dataset:
    """Load a manifest file, a folder layout ``root/[<split>/]<label>/<file>`` or a glob pattern
    (``data/**/*.wav``). ``label_from_name``: a regex searched in each file's name whose named groups
    become the label (``label``) and meta columns. ``limit``: a deterministic sample of that many items
    (the same items whatever order the manifest lists them in). ``columns``: role -> manifest column
    (columns.py); ``no_header``: the CSV has no header line (columns c0, c1, ...)."""
    table = read_source(source, columns, no_header)
    root = source_root(source)
    default = default_dataset_name(source)
    kind = "text" if "text" in table.column_names and "path" not in table.column_names else "path"
    table = _normalize(table, kind, source)
    if label_from_name:
        if kind != "path":
            raise MmfeatError("label_from_name reads file names: the source has texts, not paths")
        table = labels_from_names(table, label_from_name)
    if limit is not None:
        table = sample(table, limit)
    return Dataset(check_name("dataset", name or default), root, table, kind, allow_absolute)


def read_source(source: str, columns: dict[str, str] | None = None, no_header: bool = False) -> pa.Table:
    """The source's rows with their columns named by role (id, path or text, label, split, then the rest)."""
    if is_glob(source) and not os.path.exists(source):
        return scan_glob(source)[1]
    if os.path.isdir(source):
        if columns:
            raise MmfeatError("--columns maps a manifest's columns; a folder has none (labels come from its folders)")
        return scan_folder(source)
    return mapped(read_manifest(source, no_header), dict(columns or {}), source)


def require_modality_columns(dataset: "Dataset", modality: str, where: str) -> None:
    """The column the modality reads must exist: files for image/audio, texts (or text files) for text."""
    if modality in ("image", "audio") and dataset.kind == "text":
        raise MmfeatError(f"{where}: the {modality} modality reads files, but the manifest has a 'text' column "
                          "and no 'path' column; give a 'path' column (relative to the manifest) or use "
                          "--modality text")


def _normalize(table: pa.Table, kind: str, where: str) -> pa.Table:
    cols = table.column_names
    ids = pc.cast(table["id"], pa.string())
    if ids.null_count:
        raise MmfeatError(f"{where}: {ids.null_count} row(s) have no id")
    odd = ids.filter(pc.match_substring_regex(ids, r"[\x00-\x1f\x7f]"))
    if len(odd):
        raise MmfeatError(f"{where}: {len(odd)} id(s) hold control characters (tabs, newlines...), e.g. "
                          f"{odd[0].as_py()!r}: ids are names, give plain ones")
    counts = pc.value_counts(ids)
    dupes = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(dupes):
        shown = ", ".join(dupes[:10].to_pylist())
        raise MmfeatError(f"{where}: duplicate ids ({len(dupes)}): {shown}")
    source = pc.cast(table["path" if kind == "path" else "text"], pa.string())
    columns = {"id": ids, "source": source}
    for col in ("label", "split"):
        columns[col] = pc.cast(table[col], pa.string()) if col in cols else pa.nulls(len(table), pa.string())
    if "split" in cols:
        columns["split"] = _canonical_splits(columns["split"], where)
    columns["meta"] = _meta_map(table, [c for c in cols if c not in ("id", "path", "text", "label", "split")], where)
    return pa.table(columns)


def _meta_map(table: pa.Table, names: list[str], where: str) -> pa.Array:
    """The manifest's other columns (extra targets such as speaker or topic, provenance) as a
    map<string, string> per row; null values are left out of the row's map."""
    n = table.num_rows
    if not names:
        return pa.nulls(n, META_TYPE)
    values = []
    for name in names:
        column = table[name]
        if pa.types.is_nested(column.type):
            raise MmfeatError(f"{where}: column {name!r} is nested ({column.type}); manifest columns beyond "
                              "id/path/text/label/split must be scalars")
        values.append(pc.cast(column, pa.string()).combine_chunks())
    keys = np.array(names, dtype=object)
    valid = np.stack([v.is_valid().to_numpy(zero_copy_only=False) for v in values], axis=1)
    flat_values = pa.concat_arrays([v for v in values])  # column-major; reorder to row-major below
    order = (np.arange(len(names))[None, :] * n + np.arange(n)[:, None])[valid]
    offsets = np.concatenate([[0], np.cumsum(valid.sum(1))]).astype(np.int32)
    return pa.MapArray.from_arrays(pa.array(offsets), pa.array(np.broadcast_to(keys, (n, len(names)))[valid], pa.string()),
                                   flat_values.take(pa.array(order, pa.int64())))


def _canonical_splits(splits: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    for alias, canonical in SPLIT_ALIASES.items():
        splits = pc.if_else(pc.equal(splits, alias), canonical, splits)
    bad = pc.unique(splits.filter(pc.invert(pc.is_in(splits, pa.array(SPLITS)))).drop_null()).to_pylist()
    if bad:
        raise MmfeatError(f"{where}: unknown split value(s) {bad}; use {', '.join(SPLITS)}")
    return splits


def resolve_paths(dataset: Dataset, rel: list[str]) -> tuple[list[str | None], dict[int, BadInput]]:
    """Map manifest paths to absolute ones inside the root; unsafe ones become rejects.

    Refused before anything is opened: absolute paths (unless ``allow_absolute``), ``..``
    components, and symlinks whose target leaves the dataset root.
    """
    root_real = os.path.realpath(dataset.root)
    out: list[str | None] = []
    bad: dict[int, BadInput] = {}
    for i, p in enumerate(rel):
        if p is None or p == "":
            bad[i] = BadInput("missing_path", "no path given", stage="resolve")
        elif "\0" in p:
            bad[i] = BadInput("unusable_path", f"NUL byte in path {p!r}", stage="resolve")
        elif re.search(_TRAVERSAL, p):
            bad[i] = BadInput("unsafe_path", f"'..' in path {p!r}", stage="resolve")
        elif os.path.isabs(p) and not dataset.allow_absolute:
            bad[i] = BadInput("unsafe_path", f"absolute path {p!r} (pass allow_absolute to permit)", stage="resolve")
        else:
            full = p if os.path.isabs(p) else os.path.join(dataset.root, p)
            real = os.path.realpath(full)
            inside = os.path.commonpath([real, root_real]) == root_real
            if not inside and not (os.path.isabs(p) and dataset.allow_absolute):
                bad[i] = BadInput("unsafe_path", f"{p!r} leaves the dataset root through a symlink", stage="resolve")
            else:
                out.append(full)
                continue
        out.append(None)
    return out, bad


def text_hash(texts: list[str | None]) -> list[str | None]:
    """The ``source`` of a text item: a short sha256 of the text, not the text itself."""
    import hashlib

    return [None if t is None else "sha256:" + hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            for t in texts]
