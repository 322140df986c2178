"""A dataset's identity and current view: what it is bound to, and which items (by content) it holds now.

Layout under ``<store>/<dataset>/``::

    _dataset.json     the binding: {"name", "source" (the manifest or folder it is bound to), "created"}
    _items.parquet    the current items: id, content (sha256 of the text or the file's bytes), source,
                      label, split (the manifest's), assigned_split (the store's, pipeline/splits.py),
                      meta, size, mtime_ns, preview; its metadata holds the run record that published it
                      ({"run", "previous_run", "feature_set", "manifest_sha256", "items", "updated",
                      "changes", "read", "source"}). Replaced atomically when a run succeeds: the commit.
    _log/<run>.changes.parquet, _log/<run>.items.parquet   what each run changed (store/runlog.py)

Features are keyed by (item id, content): a feature row belongs to the current view only while its
item is in ``_items.parquet`` with the same content hash. Labels, splits and meta come from here.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from . import files
from .runlog import changes, counts
from .schema import ITEMS_ADDED, ITEMS_SCHEMA

KEY_SEP = "\x1f"


def item_keys(ids: pa.ChunkedArray | pa.Array, contents: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One string per (id, content) pair; a null content keys as the empty string."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    contents = contents.combine_chunks() if isinstance(contents, pa.ChunkedArray) else contents
    return pc.binary_join_element_wise(ids, pc.fill_null(contents, ""), KEY_SEP)


class DatasetItems:
    """Handle on ``<store>/<dataset>/``: its binding and its current items."""

    def __init__(self, fs, path: str, name: str):
        self.fs, self.path, self.name = fs, path, name
        self._cache: tuple[Any, pa.Table, dict | None] | None = None

    @property
    def binding_path(self) -> str:
        return files.join(self.path, "_dataset.json")

    @property
    def items_path(self) -> str:
        return files.join(self.path, "_items.parquet")

    def binding(self) -> dict[str, Any] | None:
        if not files.exists(self.fs, self.binding_path):
            return None
        try:
            obj = files.read_json(self.fs, self.binding_path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.binding_path}: unreadable dataset binding ({exc}); "
                             "`mmfeat rm` the dataset or restore the file") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("source"), str):
            raise StoreError(f"{self.binding_path}: malformed dataset binding")
        return obj

    def check_binding(self, source: str, rebind: bool = False) -> dict[str, Any] | None:
        """The current binding; another source under the same name is an error (unless ``rebind``). A damaged
        binding is rewritten when the last run's record names this source (or with ``rebind``)."""
        try:
            current = self.binding()
        except StoreError as exc:
            if not (rebind or self.record().get("source") == source):
                raise StoreError(f"{exc}; pass --rebind to bind {self.name!r} to {source} again") from None
            from ..progress import log

            log.warning("%s: rewriting its damaged binding to %s", self.name, source)
            return None
        if current is not None and current["source"] != source and not rebind:
            raise StoreError(f"dataset {self.name!r} is bound to {current['source']}, not {source}: pass "
                             f"--dataset NAME to store this source under another name, or --rebind if "
                             f"{current['source']} moved there")
        return current

    def bind(self, source: str, rebind: bool = False) -> dict[str, Any]:
        """Bind the name to ``source`` on first use; another source under the same name is an error."""
        current = self.check_binding(source, rebind)
        if current is None or current["source"] != source:
            current = {**(current or {}), "name": self.name, "source": source, "created": _now()}
            files.write_json_atomic(self.fs, self.binding_path, current)
        return current

    def record(self) -> dict[str, Any]:
        """The run record of the current items (older stores: the binding's "current"; damaged items: none)."""
        try:
            self.current()
        except StoreError:
            return {}
        if self._cache is not None and self._cache[2]:
            return dict(self._cache[2])
        return dict((self.binding() or {}).get("current") or {})

    def read_options(self) -> dict[str, Any]:
        """How the last published run read the source (labels from file names, absolute paths, a limit)."""
        return self.record().get("read") or {}

    def current(self) -> pa.Table:
        """The current items (empty, with the schema, before any run). Read once per file version."""
        info = self.fs.get_file_info(self.items_path)
        if info.type == files.pafs.FileType.NotFound:
            return ITEMS_SCHEMA.empty_table()
        stamp = (info.mtime_ns, info.size)
        if self._cache is None or self._cache[0] != stamp:
            try:
                table = pq.read_table(self.items_path, filesystem=self.fs, page_checksum_verification=True)
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"{self.items_path}: unreadable items table ({str(exc).splitlines()[0][:200]}); "
                                 "mmfeat fsck --repair restores the last run's items, and the next extract "
                                 "does too") from None
            record = _record(table.schema.metadata)
            self._cache = (stamp, upgraded(table.replace_schema_metadata(None), self.items_path), record)
        return self._cache[1]

    def current_or_restored(self) -> pa.Table:
        """The current items; when they are damaged or missing, the newest snapshot's, restored in place; with
        no snapshot either, none (the run hashes every file again and assigns splits anew, and says so)."""
        try:
            missing = not files.exists(self.fs, self.items_path) and files.list_names(self.fs, files.join(self.path, "_log"))
            return self.current() if not missing else self._restored_or_empty("missing")
        except StoreError as exc:
            return self._restored_or_empty(str(exc))

    def _restored_or_empty(self, why: str) -> pa.Table:
        from ..progress import log

        if self.restore() is not None:
            return self.current()
        log.warning("%s: the items table is unreadable (%s) and no snapshot is left: this run hashes every file "
                    "again, assigns splits anew and reports every item as added", self.name, why)
        return ITEMS_SCHEMA.empty_table()

    def restore(self) -> str | None:
        """Rewrite the items table from the newest readable snapshot; returns the snapshot used."""
        from ..progress import log
        from .runlog import latest_snapshot

        path = latest_snapshot(self.fs, self.path)
        if path is None:
            return None
        table = pq.read_table(path, filesystem=self.fs)
        files.write_parquet_atomic(self.fs, self.items_path, table, compression="zstd", write_page_checksum=True)
        log.warning("%s: restored the items table from %s", self.name, path)
        return path

    def given_splits(self) -> pa.Array:
        """Ids whose split the manifest gives (the others carry the one the store assigned)."""
        items = self.current()
        return items.filter(pc.is_valid(items["split"]))["id"].combine_chunks()

    def publish(self, items: pa.Table, record: dict[str, Any], change_rows: pa.Table) -> dict[str, Any]:
        """Make ``items`` the current view: the run's log first, then the items switch (one atomic rename:
        a run killed before it changes nothing readers see). Returns the record, completed."""
        from .runlog import prune, write

        previous = self.record().get("run")
        record = {**record, "run": record.get("run") or new_run_id(), "previous_run": previous,
                  "items": items.num_rows, "updated": _now()}
        table = items.select(ITEMS_SCHEMA.names).cast(ITEMS_SCHEMA)
        write(self.fs, self.path, record, change_rows, table)
        meta = {RUN_KEY: json.dumps(record).encode()}
        files.write_parquet_atomic(self.fs, self.items_path, table.replace_schema_metadata(meta), compression="zstd",
                                   write_page_checksum=True)
        prune(self.fs, self.path, record["run"])
        return record

    def log(self) -> list[dict[str, Any]]:
        """The published runs, newest first (run, previous_run, updated, feature_set, items, changes...)."""
        from .runlog import chain

        record = self.record()
        return chain(self.fs, self.path, record if record.get("run") else None)

    def changes(self, run: str) -> pa.Table:
        """What one run changed: id, change (added, removed, content_changed, label_changed, split_changed,
        meta_changed), before, after."""
        path = files.join(self.path, "_log", f"{check_run(run)}.changes.parquet")
        try:
            return pq.read_table(path, filesystem=self.fs).replace_schema_metadata(None)
        except (OSError, pa.ArrowInvalid):
            known = ", ".join(r["run"] for r in self.log()[:10]) or "none"
            raise StoreError(f"no readable log of run {run!r} in {self.name}; runs: {known}") from None


RUN_KEY = b"mmfeat.run"


def _record(metadata) -> dict[str, Any] | None:
    try:
        raw = (metadata or {}).get(RUN_KEY)
        record = json.loads(raw.decode()) if raw else None
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def new_run_id() -> str:
    import uuid

    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"


def check_run(run: str) -> str:
    import re

    if not re.match(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$", run or ""):
        raise StoreError(f"invalid run id {run!r} (mmfeat log DATASET lists them)")
    return run


def compare(previous: pa.Table, items: pa.Table) -> dict[str, int]:
    """Counts of added, removed, content-changed and metadata-changed (label/split/meta) items."""
    return counts(changes(previous, items))


def upgraded(table: pa.Table, where: str) -> pa.Table:
    """An items table in the current schema: columns added since it was written read as nulls."""
    for name in ITEMS_ADDED:
        if name not in table.column_names:
            table = table.append_column(ITEMS_SCHEMA.field(name), pa.nulls(table.num_rows, pa.string()))
    try:
        return table.select(ITEMS_SCHEMA.names).cast(ITEMS_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise StoreError(f"{where}: unexpected schema ({table.schema.names}); mmfeat fsck --repair restores the "
                         "last good items, or rerun extract") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
