"""``extract --dry-run``: what a run would do (items, changes, path rejects, shards) without writing."""
from __future__ import annotations

import math
from typing import Any

import pyarrow.compute as pc

from .content import compare
from .errors import StoreError
from .extract import DEFAULT_SHARD_SIZE, JobSpec, _done_keys, read_items
from .registry import cached_extractor
from .store import FeatureStore, make_provenance
from .store.items import item_keys
from .store.state import state_exists, with_state


def dry_run(spec: JobSpec, shard_size: int = DEFAULT_SHARD_SIZE, retry_rejects: bool = False) -> dict[str, Any]:
    """Plan without writing: the manifest's items and changes since the last run, the rejects the path
    checks decide, and the items and shards left to extract (known unless a corpus-fitted extractor
    has not been fitted on the dataset yet)."""
    store = FeatureStore(spec.store)
    handle = store.dataset(spec.dataset)
    handle.check_binding(spec.source, spec.rebind)
    _, items, previous = read_items(spec, handle)
    reasons: dict[str, int] = {}
    for r in items["reason"].drop_null().to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    out = {"dataset": spec.dataset, "source": spec.source, "items": items.num_rows, "changes": compare(previous, items),
           "path_rejects": reasons, "labelled": items.num_rows - items["label"].null_count,
           "feature_set": None, "to_extract": None, "shards": None}
    extractor = cached_extractor(spec.extractor, dict(spec.overrides))
    if extractor.corpus_fitted:
        if not state_exists(store, spec.fit_on or spec.dataset, extractor):
            out["note"] = f"{spec.extractor} is not fitted on {spec.fit_on or spec.dataset} yet: a run fits it first"
            return out
        with_state(store, spec.fit_on or spec.dataset, extractor, lambda folder: extractor.fit_corpus(None, folder))
    config_id = make_provenance(spec.dataset, extractor, extractor.frame_dim)["config_id"]
    path = store.set_path(spec.dataset, spec.extractor, config_id)
    todo = items.num_rows
    try:
        done = _done_keys(store.open_path(path), retry_rejects)
        todo = int(pc.sum(pc.invert(pc.is_in(item_keys(items["id"], items["content"]), value_set=done))).as_py() or 0)
    except StoreError:
        pass  # no such feature set yet: everything is to do
    out.update(feature_set=f"{spec.dataset}/{spec.extractor}-{config_id[:12]}", to_extract=todo,
               shards=math.ceil(todo / shard_size))
    return out
