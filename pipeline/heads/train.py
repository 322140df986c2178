"""Train a head on stored features and evaluate it honestly on held-out data: join the feature sets, decide
the splits, look up the kind, let it train, write the run (card, weights, report, the items it trained on),
publish it to an object store when the store is one."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa

from ..config import apply_overrides, canonical_json, sha256_text
from ..errors import MmfeatError
from ..extractors.runtime import resolve_device
from ..store import FeatureStore
from .artifacts import save_run
from .card import make_card
from .config import HeadConfig, split_overrides
from .data import joined_table, load_head_data
from .leakage import copy_groups, table_texts
from .leakage import count as leakage_count
from .registry import HeadKind, TrainJob, kind_class
from .remote import heads_root, is_remote, publish
from .snapshot import SNAPSHOT, previous_splits, read_snapshot, register_out, snapshot_table


def train_head(feature_sets: list[str], overrides: dict | None = None, store: str | None = None,
               out: str | None = None, label: str = "label", as_of: str | None = None) -> dict:
    """Train on one or more feature sets (joined on id) for one target; write the head; return its card.

    ``label`` is the ``label`` column or any other column of the dataset's manifest (kept in ``meta``).
    ``as_of``: a head run (folder or name): train on exactly the items that run trained on, with its splits.
    """
    return train_heads(feature_sets, [label], overrides, store, out, as_of)[0]


def train_heads(feature_sets: list[str], labels: list[str] | tuple[str, ...] = ("label",),
                overrides: dict | None = None, store: str | None = None, out: str | None = None,
                as_of: str | None = None) -> list[dict]:
    """Multi-target: one head per label column on the same joined features (read once).

    With several labels, ``out`` is a parent directory holding one head directory per label.
    """
    if not labels or len(set(labels)) != len(labels):
        raise MmfeatError(f"labels must be distinct column names, got {list(labels)}")
    st = FeatureStore(store)
    sets = [st.resolve(spec) for spec in feature_sets]
    overrides = dict(overrides or {})
    name = str(overrides.get("head", "linear"))
    kind_type = kind_class(name, sets)
    common, own = split_overrides(kind_type.params_type, overrides)
    cfg = apply_overrides(HeadConfig, common)
    kind = kind_type(apply_overrides(kind_type.params_type, own))
    kind.check(sets, cfg)
    snapshot = read_snapshot(as_of, st) if as_of else None
    column = kind.input_column(sets)
    joined = joined_table(sets, cfg.missing, with_features=not kind.streams(sets, cfg), column=column,
                          max_bytes=cfg.memory_gb * 2**30, snapshot=snapshot)
    device = str(resolve_device(cfg.device))
    groups = copy_groups(joined[1], np.asarray(joined[0]["id"].to_pylist(), dtype=object),
                         table_texts(sets, joined[0])) if cfg.copies_in_one_split and snapshot is None else None
    cards = []
    for label in labels:
        head_dir = _head_dir(st, sets, label, cfg, kind, out, len(labels) > 1)
        previous = previous_splits(head_dir) if snapshot is None else {}
        data = load_head_data(joined, label, cfg, previous, fixed_splits=snapshot is not None, copy_groups=groups)
        data.report["leakage"] = leakage_count(data, sets)
        job = TrainJob(sets, data, cfg, kind.params, head_dir, st, device, name)
        cards.append(_train_one(job, kind, joined[0], as_of))
        if out and not is_remote(st):
            base = os.path.basename(os.path.abspath(out))
            register_out(st, f"{base}-{label}" if len(labels) > 1 else base, head_dir)
        if is_remote(st):  # trained in a local folder; the store gets the run, then its latest.json
            cards[-1]["store_path"] = publish(st, cards[-1]["path"], os.path.basename(head_dir))
    return cards


def _head_dir(st: FeatureStore, sets, label: str, cfg: HeadConfig, kind: HeadKind, out: str | None,
              several: bool) -> str:
    settings = {**dataclasses.asdict(cfg), **dataclasses.asdict(kind.params)}
    name = "-".join(s.name.replace("/", "_") for s in sets) + (f"-{label}" if label != "label" else "") + \
        f"-{cfg.head}-" + sha256_text(canonical_json({"sets": [s.config_id for s in sets], "label": label,
                                                      "cfg": settings}))[:8]
    head_dir = (os.path.join(out, label) if several else out) if out else os.path.join(heads_root(st), name)
    head_dir = os.path.abspath(head_dir)  # the card and the predictions name it wherever they are read
    try:  # before any training: a head that cannot be written must not cost the training first
        os.makedirs(os.path.join(head_dir, "runs"), exist_ok=True)
        probe = os.path.join(head_dir, "runs", f".probe-{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as exc:
        raise MmfeatError(f"cannot write a head to {head_dir}: {exc.strerror or exc} (choose another --out)") from None
    return head_dir


def _train_one(job: TrainJob, kind: HeadKind, table: pa.Table, as_of: str | None) -> dict:
    trained = kind.train(job)
    card = make_card(job, trained, kind)
    card["data"].setdefault("leakage", job.data.report.get("leakage"))
    if as_of:
        card["as_of"] = as_of
    data, sets = trained.data or job.data, trained.sets or job.sets
    y_test = data.test.y if trained.y_test is None else trained.y_test
    with np.errstate(all="ignore"):
        predicted = trained.test_logits.argmax(1).numpy()
    snapshot = snapshot_table(sets, data, table)
    card["path"] = save_run(job.head_dir, trained.model, card, trained.best.curve, y_test, predicted,
                            trained.carried, {SNAPSHOT: snapshot})
    card["head_dir"] = job.head_dir
    return card
