"""Where a source's files are and what its dataset is called: roots, globs, split folder names, default
names. Nothing here reads a manifest or scans a folder."""
from __future__ import annotations

import os
import re

from ..errors import MmfeatError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}
# Manifest file stems that say nothing about the data: such a manifest is named after its folder.
GENERIC_STEMS = {"manifest", "metadata", "meta", "index", "data", "dataset", "labels", "items", "list", "files",
                 "all", "annotations"}
SPLIT_STEMS = {"train", "test", "val", "valid", "validation", "dev"}  # .../news/train.csv is news-train


def is_glob(source: str) -> bool:
    return any(c in source for c in "*?[")


def glob_root(pattern: str) -> str:
    """The folder above the first component with a wildcard (the dataset's root)."""
    fixed = []
    for part in pattern.split("/"):
        if is_glob(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def source_root(source: str) -> str:
    """The folder a source's paths are relative to (a folder itself, a manifest's folder, the part of a
    glob above its first wildcard), without reading or scanning the source."""
    if is_glob(source) and not os.path.exists(source):
        return os.path.abspath(glob_root(source))
    if not os.path.exists(source):
        raise MmfeatError(f"dataset source not found: {source}")
    return os.path.abspath(source) if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))


def default_dataset_name(source: str) -> str:
    """A folder's name; a manifest's file stem, or its folder's name when the stem is generic
    (``.../photos/manifest.csv`` is ``photos``); a split's manifest is ``<folder>-<split>``
    (``.../news/train.csv`` is ``news-train``). Names that are not valid become valid ones."""
    if is_glob(source) and not os.path.exists(source):
        source = glob_root(source)
    source = os.path.abspath(source)
    if os.path.isdir(source):
        name = os.path.basename(os.path.normpath(source))
    else:
        stem = os.path.splitext(os.path.basename(source))[0]
        folder = os.path.basename(os.path.dirname(source))
        if stem.lower() in GENERIC_STEMS and folder:
            name = folder
        else:
            name = f"{folder}-{stem}" if stem.lower() in SPLIT_STEMS and folder else stem
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-")[:128] or "dataset"
    return name.replace("..", "_")
