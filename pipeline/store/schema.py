"""Arrow schemas of feature and reject tables, and the provenance carried in every file."""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import StoreError

PROVENANCE_KEY = b"mmfeat.provenance"
# Format 2: parts hold (item, content) keys and features; labels, splits and manifest columns live in
# the dataset's current items table (store/items.py), joined at read time.
FORMAT_VERSION = 2
_VERSIONED = ("mmfeat", "torch", "transformers", "librosa", "gensim", "pyarrow", "numpy")
_REQUIRED = {"format": int, "dataset": str, "extractor": str, "extractor_version": str,
             "config": dict, "config_id": str, "weights_sha256": (str, type(None)), "dim": int,
             "versions": dict, "created": str}

META_TYPE = pa.map_(pa.string(), pa.string())

# Rejects carry the content hash they were decided on (null when the file could not be read at all).
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("content", pa.string()), ("source", pa.string()),
                           ("stage", pa.string()), ("reason", pa.string()), ("retryable", pa.bool_()),
                           ("message", pa.string())])
# What readers see of rejects: the current view, without the internal key.
REJECT_VIEW_SCHEMA = pa.schema([f for f in REJECT_SCHEMA if f.name != "content"])

# The dataset's current items (one row per manifest row): what labels, splits and meta readers see.
# ``split`` is the manifest's; ``assigned_split`` the one the store assigned once to an item the manifest
# gives none (pipeline/splits.py); readers see the first that is set. ``preview``: the start of a text
# item's text (errors, neighbours and audits read without the source).
ITEMS_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("content", pa.string()),
                          pa.field("source", pa.string()), pa.field("label", pa.string()),
                          pa.field("split", pa.string()), pa.field("meta", META_TYPE),
                          pa.field("size", pa.int64()), pa.field("mtime_ns", pa.int64()),
                          pa.field("assigned_split", pa.string()), pa.field("preview", pa.string())])
# Columns added to the items table after stores were written: read as nulls from older files.
ITEMS_ADDED = ("assigned_split", "preview")


# Sparse features (tf-idf): each row's nonzero column indices and their values; DuckDB reads it as a
# STRUCT(indices INTEGER[], "values" FLOAT[]). The width (dim) is in the provenance.
SPARSE_TYPE = pa.struct([pa.field("indices", pa.list_(pa.int32())), pa.field("values", pa.list_(pa.float32()))])


def features_type(dim: int, sparse: bool = False, tensor: bool = False) -> pa.DataType:
    """float32 vectors; the sparse struct; or, for tensor sets (activations), bfloat16 bit patterns
    as uint16 (compact, and readable by DuckDB and any Parquet reader; the shape is in provenance)."""
    if tensor:
        return pa.list_(pa.uint16(), dim)
    return SPARSE_TYPE if sparse else pa.list_(pa.float32(), dim)


def _frames_field(frame_dim: int) -> pa.Field:
    return pa.field("frames", pa.list_(pa.list_(pa.float32(), frame_dim)))


def part_schema(dim: int, frame_dim: int | None = None, sparse: bool = False, tensor: bool = False) -> pa.Schema:
    """A part file: row ``id`` (``<item>#k`` for windows of one item), ``item`` (the manifest id),
    ``content`` (the item's content hash), ``row_meta`` (what the extractor adds per row), features."""
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("item", pa.string(), nullable=False),
              pa.field("content", pa.string(), nullable=False), pa.field("row_meta", META_TYPE),
              pa.field("features", features_type(dim, sparse, tensor), nullable=False)]
    return pa.schema(fields + ([_frames_field(frame_dim)] if frame_dim else []))


def feature_schema(dim: int, frame_dim: int | None = None, sparse: bool = False, tensor: bool = False) -> pa.Schema:
    """What readers see: id, label, split, source, meta (the manifest's other columns, as strings,
    plus the extractor's row entries), features (fixed_size_list<float32>[dim], or ``SPARSE_TYPE`` for
    sparse extractors) and optional frames."""
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("label", pa.string()),
              pa.field("split", pa.string()), pa.field("source", pa.string()), pa.field("meta", META_TYPE),
              pa.field("features", features_type(dim, sparse, tensor), nullable=False)]
    return pa.schema(fields + ([_frames_field(frame_dim)] if frame_dim else []))


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def make_provenance(dataset: str, extractor: Any, frame_dim: int | None = None) -> dict[str, Any]:
    """Everything needed to tell where a feature set came from (no pickles, JSON only)."""
    import dataclasses

    return {"format": FORMAT_VERSION, "dataset": dataset, "extractor": extractor.name,
            "extractor_version": extractor.version, "modality": extractor.modality,
            "config": dataclasses.asdict(extractor.config), "config_id": extractor.config_id,
            "weights_sha256": extractor.weights_sha256, "dim": int(extractor.dim), "frame_dim": frame_dim,
            "sparse": bool(extractor.sparse),
            "tensor": {"shape": list(extractor.tensor_shape), "dtype": "bfloat16"} if extractor.tensor_shape else None,
            "runtime": extractor.describe(), "versions": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def validate_provenance(obj: Any, where: str) -> dict[str, Any]:
    """Check parsed provenance JSON field by field; raise StoreError naming ``where``."""
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: provenance is not a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in obj or not isinstance(obj[key], kind):
            raise StoreError(f"{where}: provenance field {key!r} missing or of the wrong type")
    if obj["format"] > FORMAT_VERSION:
        raise StoreError(f"{where}: written by a newer mmfeat (format {obj['format']}); upgrade mmfeat")
    if obj["format"] < FORMAT_VERSION:
        raise StoreError(f"{where}: written by an older mmfeat (format {obj['format']}, labels inside the "
                         f"features); remove it (mmfeat rm) and extract again")
    if len(obj["config_id"]) != 64 or any(c not in "0123456789abcdef" for c in obj["config_id"]):
        raise StoreError(f"{where}: config_id is not a sha256 hex digest")
    problem = _shape_problem(obj)
    if problem:
        raise StoreError(f"{where}: provenance {problem}")
    return obj


MAX_DIM = 1 << 28  # features per row a reader will allocate for


def _shape_problem(obj: dict[str, Any]) -> str | None:
    """What in the provenance a reader could not build a schema from (or would allocate without bound)."""
    def count(value, top=MAX_DIM) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top
    if not count(obj["dim"]):
        return f"dim must be an integer in 1..{MAX_DIM}"
    if obj.get("frame_dim") is not None and not count(obj["frame_dim"], 1 << 20):
        return "frame_dim must be empty or an integer in 1..2^20"
    if not isinstance(obj.get("sparse", False), bool):
        return "sparse must be true or false"
    tensor = obj.get("tensor")
    if tensor is not None:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not (isinstance(shape, list) and shape and all(count(d, 1 << 16) for d in shape)
                and int(np.prod(shape)) == obj["dim"]):
            return "tensor.shape must list positive sizes whose product is dim"
    return None


def parse_provenance(raw: bytes | None, where: str) -> dict[str, Any]:
    if raw is None:
        raise StoreError(f"{where}: no mmfeat provenance in the file metadata")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{where}: provenance is not valid JSON ({exc})") from None
    except RecursionError:
        raise StoreError(f"{where}: provenance nested too deeply") from None
    return validate_provenance(obj, where)
