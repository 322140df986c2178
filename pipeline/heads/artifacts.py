"""Head runs on disk: safetensors weights, the JSON card, pictures and a Markdown report, written through
a staging folder renamed into ``<head>/runs/<time>-<id>/`` (a kill leaves no half-written head), then
``<head>/latest`` switched to it."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone

from ..errors import MmfeatError
from ..store import files
from . import report

CARD, WEIGHTS = "head.json", "head.safetensors"


def save_run(head_dir: str, model, card: dict, curve, y_true, y_pred,
             carried: dict[str, str] | None = None, tables: dict | None = None) -> str:
    """Write a training run and make it the head's latest; returns the run folder. ``carried``: name ->
    path of more files the run carries (a tuned network's weights); ``tables``: name -> Arrow table
    written as Parquet in the run (the items it trained on)."""
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    from ..store.schema import library_versions

    run = os.path.join(head_dir, "runs", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") +
                       f"-{uuid.uuid4().hex[:6]}")
    card["versions"] = library_versions()
    try:
        with files.staged_local_folder(run, CARD) as staging:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(staging, WEIGHTS))
            for name, src in (carried or {}).items():
                shutil.copyfile(src, os.path.join(staging, name))
            for name, table in (tables or {}).items():
                pq.write_table(table, os.path.join(staging, name), compression="zstd")
            with open(os.path.join(staging, CARD), "w") as f:
                json.dump(card, f, indent=1)
            report.plots(staging, card, curve)
            with open(os.path.join(staging, "report.md"), "w") as f:
                f.write(report.markdown(card, {p: p for p in report.PICTURES}))
            mode = 0o666 & ~_umask()
            for name in os.listdir(staging):  # safetensors writes 0600; the rest of a head is readable alike
                os.chmod(os.path.join(staging, name), mode)
    except OSError as exc:
        raise MmfeatError(f"cannot write the head to {head_dir}: {exc.strerror or exc} (nothing half-written "
                          "is left; free space or choose another --out)") from None
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
    if os.path.isfile(os.path.join(path, CARD)):
        return path
    latest = os.path.join(path, "latest")
    if os.path.isfile(os.path.join(latest, CARD)):
        return os.path.realpath(latest)
    if store is not None and not os.path.exists(path) and "/" not in path.strip("/"):
        from .remote import fetch, heads_root, is_remote

        return fetch(store, path) if is_remote(store) else resolve_head_dir(os.path.join(heads_root(store), path))
    raise MmfeatError(f"{path}: not a head (no head.json, no latest run)")


def load_head(head_dir: str, store=None) -> tuple:
    """The head (a run folder, a head folder's latest run, or a head name in ``store``), validated
    before anything is allocated."""
    from .card import load_checked

    return load_checked(resolve_head_dir(head_dir, store))
