"""Device, precision and worker choices shared by the extractors."""
from __future__ import annotations

import contextlib
import os

import torch

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU (using all cores)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import MmfeatError

        raise MmfeatError("device=cuda asked for, but CUDA is not available here; use device=auto or cpu")
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    return torch.device(device)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA, fp32 on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def worker_count(requested: int | None, device: torch.device, n_items: int, batch_size: int) -> int:
    """Decode workers: all cores next to a GPU; on the CPU few, since the model needs the cores."""
    if requested is not None:
        return requested
    if n_items <= batch_size:
        return 0  # one batch: worker start-up would cost more than it hides
    cores = os.cpu_count() or 1
    return min(cores, 16) if device.type == "cuda" else max(1, cores // 4)


def loader_context():
    """Multiprocessing context for decode workers: forkserver.

    Plain fork copies the parent's threads' state; after an orchestrator (Prefect's engine, Dask's
    client) has run in the same process, forked DataLoader workers were seen to die at start. The
    forkserver is a clean process that imports the decoders once and forks workers cheaply.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pipeline.extractors.image.decode", "pipeline.extractors.audio.spectral"])
    return ctx
