"""What heads pin: every head run keeps the items it trained, validated and tested on
(``<store>/_heads/<head>/runs/<run>/items.parquet``: config_id, id, content, label, split), so that the
run can be evaluated or retrained on exactly what it saw (``train-head --as-of``). ``gc`` keeps the rows
those files name; ``rm head:NAME`` releases them. Heads trained with ``--out`` elsewhere are registered
under ``<store>/_heads/<name>`` (a link to their folder), so they are listed and pin alike."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import files
from .items import item_keys

SNAPSHOT = "items.parquet"
PIN_SCHEMA = pa.schema([pa.field("config_id", pa.string()), pa.field("id", pa.string()),
                        pa.field("content", pa.string()), pa.field("label", pa.string()),
                        pa.field("split", pa.string())])


def snapshot_files(store) -> list[str]:
    """Every head run's snapshot in the store (registered ``--out`` heads included)."""
    root = files.join(store.root, "_heads")
    out = []
    for head in files.list_names(store.fs, root):
        runs = files.join(root, head, "runs")
        if isinstance(store.fs, files.pafs.LocalFileSystem):
            runs = os.path.realpath(runs)  # a registered --out head is a link to its folder
        for run in files.list_names(store.fs, runs):
            path = files.join(runs, run, SNAPSHOT)
            if not run.startswith(".") and files.exists(store.fs, path):
                out.append(path)
    return out


def pinned_keys(store) -> dict[str, pa.Array]:
    """config_id -> the (id, content) keys some head run pins in that feature set. An unreadable snapshot
    pins nothing and is named by ``fsck``."""
    keys: dict[str, list] = {}
    for path in snapshot_files(store):
        try:
            table = pq.read_table(path, filesystem=store.fs, columns=["config_id", "id", "content"])
        except (OSError, pa.ArrowInvalid):
            continue
        for config_id in pc.unique(table["config_id"]).to_pylist():
            rows = table.filter(pc.equal(table["config_id"], config_id))
            keys.setdefault(config_id, []).append(item_keys(rows["id"], rows["content"]))
    return {c: pc.unique(pa.concat_arrays(parts)) for c, parts in keys.items()}
