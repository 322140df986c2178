"""Sources without a manifest (a folder tree, a glob pattern) and labels taken from file names."""
from __future__ import annotations

import glob
import hashlib
import os
import re

import numpy as np
import pyarrow as pa

from ..errors import MmfeatError
from ..store.schema import META_TYPE
from .layout import SPLIT_ALIASES, SPLITS, source_root


def scan_folder(root: str) -> pa.Table:
    """Every file below ``root`` (hidden ones aside): the label is the first folder under the root
    (under the split folder when the top level is train/val/test), so deeper layouts such as
    ``speaker/chapter/file`` are labelled by speaker; files with no label folder above them are
    kept unlabelled, not skipped."""
    top = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    has_splits = bool(top) and all(SPLIT_ALIASES.get(d, d) in SPLITS for d in top)
    rel_paths, labels, splits = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        parts = [] if os.path.samefile(dirpath, root) else os.path.relpath(dirpath, root).split(os.sep)
        label_at = 1 if has_splits else 0
        for fname in sorted(f for f in filenames if not f.startswith(".")):
            rel_paths.append("/".join(parts + [fname]))
            labels.append(parts[label_at] if len(parts) > label_at else None)
            splits.append(SPLIT_ALIASES.get(parts[0], parts[0]) if has_splits and parts else None)
    if not rel_paths:
        raise MmfeatError(f"no files found in {root}: expected root/<label>/<file> or root/<split>/<label>/<file>")
    return pa.table({"id": rel_paths, "path": rel_paths, "label": pa.array(labels, pa.string()),
                     "split": pa.array(splits, pa.string())})


def scan_glob(pattern: str) -> tuple[str, pa.Table]:
    """(root, table) of the regular files matching ``pattern`` (``**`` spans folders); unlabelled."""
    root = source_root(pattern)
    matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not matches:
        raise MmfeatError(f"no files match {pattern!r}")
    rel = [os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/") for p in matches]
    return root, pa.table({"id": rel, "path": rel, "label": pa.nulls(len(rel), pa.string()),
                           "split": pa.nulls(len(rel), pa.string())})


def labels_from_names(table: pa.Table, pattern: str) -> pa.Table:
    """Search ``pattern`` in each file name; its group ``label`` becomes the label, other named groups
    meta columns (overriding the manifest's). Names that do not match keep their label."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise MmfeatError(f"--label-from-name {pattern!r}: not a regular expression ({exc})") from None
    if not regex.groupindex:
        raise MmfeatError(f"--label-from-name {pattern!r}: name groups, e.g. '(?P<label>\\d+)_(?P<speaker>\\w+)_'")
    labels, metas, matched = table["label"].to_pylist(), table["meta"].to_pylist(), 0
    for i, path in enumerate(table["source"].to_pylist()):
        m = regex.search(os.path.basename(path or ""))
        if m is None:
            continue
        matched += 1
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        if "label" in groups:
            labels[i] = groups.pop("label")
        if groups:
            metas[i] = list({**dict(metas[i] or ()), **groups}.items())
    if not matched:
        raise MmfeatError(f"--label-from-name {pattern!r} matches none of the file names "
                          f"(e.g. {os.path.basename(table['source'][0].as_py() or '')!r})")
    return table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.string())) \
        .set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, META_TYPE))


def sample(table: pa.Table, limit: int) -> pa.Table:
    """``limit`` items chosen by a hash of their ids: the same sample whatever the manifest's order,
    and a larger limit keeps the smaller one's items."""
    if limit < 1:
        raise MmfeatError("limit must be >= 1")
    if limit >= table.num_rows:
        return table
    keys = np.array([int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") for i in table["id"].to_pylist()],
                    dtype=np.uint64)
    keep = np.sort(np.argsort(keys, kind="stable")[:limit])
    return table.take(pa.array(keep))
