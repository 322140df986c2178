"""``extract --dry-run``: what a run would do (items, changes, path rejects, shards) without writing."""
from __future__ import annotations

import math
from typing import Any

import pyarrow.compute as pc

from .errors import StoreError
from .jobspec import JobSpec
from .planning import done_keys
from .registry import cached_extractor, cheap_config_id
from .store import FeatureStore, make_provenance
from .store.items import compare, item_keys
from .store.state import state_exists, with_state


def dry_run(spec: JobSpec, shard_size: int = 8192, retry_rejects: bool = False) -> dict[str, Any]:
    """Plan without writing: the manifest's items and changes since the last run, the rejects the path
    checks decide, and the items and shards left to extract (known unless a corpus-fitted extractor
    has not been fitted on the dataset yet)."""
    from .inputs import build_items, load_dataset, require_modality_columns

    store = FeatureStore(spec.store)
    handle = store.dataset(spec.dataset)
    handle.check_binding(spec.source, spec.rebind)
    dataset = load_dataset(spec.source, spec.dataset, spec.allow_absolute, spec.label_from_name, spec.limit,
                           dict(spec.columns), spec.no_header)
    require_modality_columns(dataset, spec.modality, spec.source)
    previous = handle.current()
    items = build_items(dataset, previous)
    reasons: dict[str, int] = {}
    for r in items["reason"].drop_null().to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    out = {"dataset": spec.dataset, "source": spec.source, "modality": spec.modality, "items": items.num_rows,
           "changes": compare(previous, items), "path_rejects": reasons,
           "labelled": items.num_rows - items["label"].null_count, "feature_set": None, "to_extract": None,
           "shards": None}
    config_id = _config_id(spec, store, out)
    if config_id is None:
        return out
    path = store.set_path(spec.dataset, spec.extractor, config_id)
    todo = items.num_rows
    try:
        done = done_keys(store.open_path(path), retry_rejects)
        todo = int(pc.sum(pc.invert(pc.is_in(item_keys(items["id"], items["content"]), value_set=done))).as_py() or 0)
    except StoreError:
        pass  # no such feature set yet: everything is to do
    out.update(feature_set=f"{spec.dataset}/{spec.extractor}-{config_id[:12]}", to_extract=todo,
               shards=math.ceil(todo / shard_size))
    return out


def _config_id(spec: JobSpec, store: FeatureStore, out: dict) -> str | None:
    """The set's id: from the config and weights alone where possible, else from the loaded extractor."""
    config_id = cheap_config_id(spec.extractor, dict(spec.overrides))
    if config_id is not None:
        return config_id
    extractor = cached_extractor(spec.extractor, dict(spec.overrides))
    if extractor.corpus_fitted:
        if not state_exists(store, spec.fit_on or spec.dataset, extractor):
            out["note"] = f"{spec.extractor} is not fitted on {spec.fit_on or spec.dataset} yet: a run fits it first"
            return None
        with_state(store, spec.fit_on or spec.dataset, extractor, lambda folder: extractor.fit_corpus(None, folder),
                   can_fit=False)
    return make_provenance(spec.dataset, extractor, extractor.frame_dim)["config_id"]
