"""The items a head run trained on, kept in the run (store/pins.py): written at training, read back to
keep a retrained head's splits (``previous_splits``) and to retrain on exactly what a run saw (``--as-of``)."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import MmfeatError
from ..store.pins import PIN_SCHEMA, SNAPSHOT  # noqa: F401 (SNAPSHOT: the file name, re-exported)


def snapshot_table(sets, data, table: pa.Table) -> pa.Table:
    """(config_id, id, content, label, split) of every row the head used, for each of its feature sets."""
    ids = np.concatenate([getattr(data, s).ids for s in ("train", "val", "test")]).astype(str)
    split = np.repeat(["train", "val", "test"], [len(getattr(data, s).ids) for s in ("train", "val", "test")])
    labels = np.array(data.classes, dtype=object)[np.concatenate([getattr(data, s).y for s in ("train", "val", "test")])]
    where = pc.index_in(pa.array(ids), value_set=table["id"])
    content = pc.take(table["content"], where)
    parts = [pa.table({"config_id": pa.array([fs.config_id] * len(ids)), "id": ids, "content": content,
                       "label": pa.array(labels.astype(str)), "split": split}, schema=PIN_SCHEMA) for fs in sets]
    return pa.concat_tables(parts)


def read_snapshot(as_of: str, store) -> pa.Table:
    """The snapshot of a head run (a run folder, a head folder's latest run, or a head name)."""
    from .artifacts import resolve_head_dir

    run = resolve_head_dir(as_of, store)
    path = os.path.join(run, SNAPSHOT)
    if not os.path.isfile(path):
        raise MmfeatError(f"{run}: this head run keeps no snapshot of its items (trained before mmfeat kept them); "
                          "--as-of needs a run that does")
    try:
        return pq.read_table(path).cast(PIN_SCHEMA)
    except (OSError, pa.ArrowInvalid) as exc:
        raise MmfeatError(f"{path}: unreadable snapshot ({exc})") from None


def previous_splits(head_dir: str) -> dict[str, str]:
    """id -> split of the head's latest run (empty for a new head, or one whose snapshot is unreadable)."""
    path = os.path.join(head_dir, "latest", SNAPSHOT)
    try:
        table = pq.read_table(path, columns=["id", "split"])
    except (OSError, pa.ArrowInvalid):
        return {}
    return dict(zip(table["id"].to_pylist(), table["split"].to_pylist()))


def register_out(store, name: str, head_dir: str) -> None:
    """List a head written with ``--out`` in the store: ``<store>/_heads/<name>`` links to its folder (an
    existing head of that name in the store is left alone)."""
    from .remote import heads_root

    root = heads_root(store)
    link = os.path.join(root, name)
    if os.path.realpath(link) == os.path.realpath(head_dir) or os.path.dirname(os.path.realpath(head_dir)) == root:
        return
    if os.path.exists(link) and not os.path.islink(link):
        from ..progress import log

        log.warning("the store already holds a head named %s: %s is not listed by `mmfeat heads`", name, head_dir)
        return
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".link-{os.getpid()}-{name}")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(head_dir, tmp)
    os.replace(tmp, link)
