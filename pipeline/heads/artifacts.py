"""Head artifacts: safetensors weights, a JSON head card, plots and a Markdown report."""
from __future__ import annotations

import json
import os

import torch

from ..errors import MmfeatError
from ..store import files
from . import report


def save_head(head_dir: str, model: torch.nn.Module, card: dict, curve, y_true, y_pred, classes,
              carried: dict[str, str] | None = None) -> str:
    """Write a training run to ``<head_dir>/runs/<time>-<id>/`` through a staging folder renamed into
    place (a kill leaves no half-written head), then point ``<head_dir>/latest`` at it. Returns the run.
    ``carried``: name -> path of more files the run carries (a tuned network's weights), copied in."""
    import shutil
    import uuid
    from datetime import datetime, timezone

    from safetensors.torch import save_file

    runs = os.path.join(head_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    staging = os.path.join(head_dir, f".staging-{uuid.uuid4().hex}")
    os.makedirs(staging)
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(staging, "head.safetensors"))
        for name, src in (carried or {}).items():
            shutil.copyfile(src, os.path.join(staging, name))
        card["versions"] = _versions()
        with open(os.path.join(staging, "head.json"), "w") as f:
            json.dump(card, f, indent=1)
        report.plots(staging, card, curve)
        with open(os.path.join(staging, "report.md"), "w") as f:
            f.write(report.markdown(card, {p: p for p in report.PICTURES}))
        mode = 0o666 & ~_umask()
        for name in os.listdir(staging):  # safetensors writes 0600; the rest of a head is readable alike
            os.chmod(os.path.join(staging, name), mode)
            files.fsync(files.LOCAL, os.path.join(staging, name))
        run = os.path.join(runs, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}")
        os.rename(staging, run)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    link = os.path.join(head_dir, f".latest-{uuid.uuid4().hex}")
    os.symlink(os.path.relpath(run, head_dir), link)
    os.replace(link, os.path.join(head_dir, "latest"))
    files.fsync(files.LOCAL, head_dir)
    return run


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resolve_head_dir(path: str, store=None) -> str:
    """A run folder (holding head.json) as given, or a head folder's ``latest`` run; else, with a
    ``store`` (a FeatureStore), the head of that name in the store (fetched once from an object store)."""
    if os.path.isfile(os.path.join(path, "head.json")):
        return path
    latest = os.path.join(path, "latest")
    if os.path.isfile(os.path.join(latest, "head.json")):
        return os.path.realpath(latest)
    if store is not None and not os.path.exists(path) and "/" not in path.strip("/"):
        from .remote import fetch, is_remote
        from .train import heads_root

        return fetch(store, path) if is_remote(store) else resolve_head_dir(os.path.join(heads_root(store), path))
    raise MmfeatError(f"{path}: not a head (no head.json, no latest run)")


def _versions() -> dict:
    from ..store.schema import library_versions

    return library_versions()


def load_head(head_dir: str, store=None) -> tuple[torch.nn.Module, dict]:
    """The head (a run folder, a head folder's latest run, or a head name in ``store``), validated
    before anything is allocated."""
    from .validate import load_checked

    return load_checked(resolve_head_dir(head_dir, store))
