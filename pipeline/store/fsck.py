"""``mmfeat fsck``: check every file of the store and, with ``--repair``, mend what can be mended without
losing healthy data. It reads the data (every page's checksum, every part's sha256 against its marker), not
just the footers; it decides by the majority of the evidence (a lone manifest that disagrees with the
footers of the parts it describes is the broken one, and is rewritten from them); it covers the datasets'
items and bindings, shards, plans and staging litter, and the heads."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .catalog import FeatureStore
from .featureset import FeatureSet, load_manifest
from .lease import Lease, held
from .schema import PROVENANCE_KEY, parse_provenance

_SET_ENTRIES = {"_manifest.json", "_done", "_plan", "_predictions", "_lease.json", "_lease.lock", "_suspect", "_index",
                "_audit", "_neighbors", "_drift"}
_IDENTITY = ("config_id", "dim", "frame_dim", "sparse", "tensor", "extractor", "dataset")


class Findings:
    def __init__(self, repair: bool):
        self.repair, self.rows = repair, []

    def add(self, path: str, problem: str, fix: str, action: Callable[[], Any] | None = None) -> None:
        done = False
        if self.repair and action is not None:
            try:
                action()
                done = True
            except (OSError, StoreError) as exc:
                fix = f"{fix} (repair failed: {exc})"
        self.rows.append({"path": path, "problem": problem, "fix": fix, "repaired": done})


def fsck(store: FeatureStore, repair: bool = False) -> list[dict[str, Any]]:
    """Every problem found (path, problem, fix, repaired)."""
    found = Findings(repair)
    for dataset in files.list_names(store.fs, store.root, pafs.FileType.Directory):
        if dataset.startswith(("_", ".")):
            continue
        _check_dataset(store, dataset, found)
        _check_states(store, dataset, found)
        for name in files.list_names(store.fs, files.join(store.root, dataset), pafs.FileType.Directory):
            if not name.startswith(("_", ".")):
                _check_set(store, files.join(store.root, dataset, name), found)
    _check_heads(store, found)
    return found.rows


def _check_dataset(store: FeatureStore, name: str, found: Findings) -> None:
    items = store.dataset(name)
    try:
        items.binding()
    except StoreError as exc:
        source = items.record().get("source")
        found.add(items.binding_path, str(exc), "rewrite the binding from the last run's record" if source else
                  "extract with --rebind", (lambda: items.bind(source, rebind=True)) if source else None)
    if files.exists(store.fs, items.items_path):
        try:
            items.current()
        except StoreError as exc:
            found.add(items.items_path, str(exc), "restore the items of the last run's snapshot",
                      lambda: _restored(items))
    elif files.list_names(store.fs, files.join(items.path, "_log")):
        found.add(items.items_path, "the items table is missing", "restore the items of the last run's snapshot",
                  lambda: _restored(items))


def _check_states(store: FeatureStore, dataset: str, found: Findings) -> None:
    """Fitted state (word2vec, tf-idf) whose files differ from its marker: new items cannot be extracted with
    it; removed, the next extract fits it anew (another config_id: a new set beside the readable old one)."""
    from .state import MARKER, damaged_files

    root = files.join(store.root, dataset, ".state")
    for key in files.list_names(store.fs, root, pafs.FileType.Directory):
        folder = files.join(root, key)
        if files.exists(store.fs, files.join(folder, MARKER)) and damaged_files(store.fs, folder):
            found.add(folder, f"fitted state damaged: {', '.join(damaged_files(store.fs, folder))} differ from "
                      "its marker", "remove it: the stored rows stay readable, and the next extract fits the state "
                      "anew (as a new feature set: its features differ)", lambda f=folder: store.fs.delete_dir(f))


def _restored(items) -> None:
    if items.restore() is None:
        raise StoreError("no readable snapshot to restore from")


def _check_set(store: FeatureStore, path: str, found: Findings) -> None:
    manifest = _consensus_manifest(store, path, found)
    if manifest is None:
        return
    fs = FeatureSet(store.fs, path, manifest)
    if found.repair:
        try:
            with held(fs.fs, fs.path, "fsck"):
                _check_shards(fs, found)
                _check_litter(fs, found)
        except StoreError as exc:
            found.add(path, f"not checked: {exc}", "run fsck again when the writer has finished")
        return
    _check_shards(fs, found)
    held_now = Lease(fs.fs, fs.path).holder()
    if held_now is None or held_now["expires"] < time.time():
        _check_litter(fs, found)  # a writer's staging files and uncommitted parts are not litter


def _consensus_manifest(store: FeatureStore, path: str, found: Findings) -> dict | None:
    """The set's manifest, or the provenance most of its parts' footers agree on when the manifest is
    unreadable or disagrees with them (rewritten from them on repair)."""
    where = files.join(path, "_manifest.json")
    try:
        manifest, why = load_manifest(store.fs, path), None
    except StoreError as exc:
        manifest, why = None, str(exc)
    votes = _footer_votes(store, path)
    if votes:
        key, (count, provenance) = max(votes.items(), key=lambda kv: kv[1][0])
        agrees = manifest is not None and tuple(manifest.get(k) for k in _IDENTITY) == key
        if not agrees and count >= max(1, sum(c for c, _ in votes.values()) // 2 + 1) and \
                path.rsplit("-", 1)[-1] == provenance["config_id"][:12]:
            problem = why or f"the manifest disagrees with {count} part footer(s) on {_diff(manifest, provenance)}"
            found.add(where, problem, "rewrite the manifest from the parts' footers",
                      lambda: files.write_json_atomic(store.fs, where, provenance))
            return provenance
    if manifest is None:
        found.add(where, why or "no manifest", "restore it, or remove the set (mmfeat rm DATASET/SET)")
    return manifest


def _footer_votes(store: FeatureStore, path: str) -> dict[tuple, tuple[int, dict]]:
    votes: dict[tuple, tuple[int, dict]] = {}
    for name in files.list_names(store.fs, path):
        if not (name.startswith("part-") and name.endswith(".parquet")):
            continue
        try:
            raw = (pq.read_schema(files.join(path, name), filesystem=store.fs).metadata or {}).get(PROVENANCE_KEY)
            provenance = parse_provenance(raw, name)
        except (OSError, ValueError, StoreError):
            continue
        key = tuple(provenance.get(k) for k in _IDENTITY)
        votes[key] = (votes.get(key, (0, provenance))[0] + 1, provenance)
    return votes


def _diff(manifest: dict | None, provenance: dict) -> str:
    if manifest is None:
        return "everything"
    return ", ".join(f"{k} ({manifest.get(k)!r} vs {provenance.get(k)!r})" for k in _IDENTITY
                     if manifest.get(k) != provenance.get(k))


def _check_shards(fs: FeatureSet, found: Findings) -> None:
    """Damaged markers, files and footers (as readers judge them), then every healthy shard's data."""
    fs.done_markers()
    broken = list(fs.problems)
    for shard in sorted(fs.done_markers()):
        why = fs.verify_shard(shard)
        if why:
            broken.append((shard, why))
    for shard, why in broken:
        found.add(files.join(fs.path, "_done", f"{shard}.json"), why,
                  "drop the shard (the next extract extracts its items again)", lambda s=shard: _drop(fs, s))


def _drop(fs: FeatureSet, shard: str) -> None:
    for path in (files.join(fs.path, "_done", f"{shard}.json"), fs.shard_path(shard), fs.shard_path(shard, "rejects")):
        files.delete_if_exists(fs.fs, path)


def _check_litter(fs: FeatureSet, found: Findings) -> None:
    marked = {n[:-5] for n in files.list_names(fs.fs, files.join(fs.path, "_done")) if n.endswith(".json")}
    for name, kind in files.list_entries(fs.fs, fs.path).items():
        shard = name.split("-", 1)[-1].rsplit(".", 1)[0]
        if name == "_lease.json" and kind != "file":
            found.add(files.join(fs.path, name), f"the lease is a {kind}", "delete it",
                      lambda p=files.join(fs.path, name): files.delete_if_exists(fs.fs, p))
        elif not (name in _SET_ENTRIES or (name.startswith(("part-", "rejects-")) and shard in marked)):
            what = "staging file" if name.startswith(".staging-") else \
                "orphan part (no done marker)" if name.startswith(("part-", "rejects-")) else f"foreign {kind}"
            found.add(files.join(fs.path, name), what, "delete it",
                      lambda p=files.join(fs.path, name): files.delete_if_exists(fs.fs, p))
    for directory in ("_plan", "_predictions"):
        for name in files.list_names(fs.fs, files.join(fs.path, directory)):
            if directory == "_plan" or name.startswith(".staging-"):
                path = files.join(fs.path, directory, name)
                found.add(path, "a killed run's plan" if directory == "_plan" else "staging file", "delete it",
                          lambda p=path: files.delete_if_exists(fs.fs, p))


def _check_heads(store: FeatureStore, found: Findings) -> None:
    """Staging litter under ``_heads`` and runs whose card no longer reads."""
    root = files.join(store.root, "_heads")
    for head in files.list_names(store.fs, root):
        path = files.join(root, head)
        if head.startswith((".staging-", ".latest-", ".link-")):
            found.add(path, "staging litter of a killed head save", "delete it", lambda p=path: _delete_any(store, p))
            continue
        for name in files.list_names(store.fs, files.join(path, "runs")) + files.list_names(store.fs, path):
            if name.startswith((".staging-", ".latest-", ".pending-")):
                litter = files.join(path, "runs", name) if files.exists(store.fs, files.join(path, "runs", name)) \
                    else files.join(path, name)
                found.add(litter, "staging litter of a killed head save", "delete it",
                          lambda p=litter: _delete_any(store, p))


def _delete_any(store: FeatureStore, path: str) -> None:
    import os
    import shutil

    if isinstance(store.fs, pafs.LocalFileSystem) and os.path.islink(path):
        os.remove(path)
    elif isinstance(store.fs, pafs.LocalFileSystem) and os.path.isdir(path):
        shutil.rmtree(path)
    else:
        files.delete_if_exists(store.fs, path)
