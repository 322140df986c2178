"""Apply a saved head to a feature set and store the predictions as Parquet."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MmfeatError
from ..store import FeatureStore
from ..store import files
from .artifacts import load_head
from .data import joined_table
from .model import predict_proba


def predict(head_dir: str, feature_sets: list[str] | str, store: str | None = None) -> dict:
    """Predict every row of the feature set(s); refuses sets whose config_id the head was not trained on."""
    model, card = load_head(head_dir)
    st = FeatureStore(store)
    specs = [feature_sets] if isinstance(feature_sets, str) else list(feature_sets)
    sets = [st.resolve(s) for s in specs]
    trained = [s["config_id"] for s in card["feature_sets"]]
    got = [s.config_id for s in sets]
    if got != trained:
        raise MmfeatError(f"head was trained on config_id(s) {[t[:12] for t in trained]}, "
                          f"not {[g[:12] for g in got]}: features would not mean the same thing")
    table, x, _ = joined_table(sets, "drop")
    std = card["standardization"]
    proba = predict_proba(model, x, np.asarray(std["mean"], np.float32), np.asarray(std["std"], np.float32))
    classes = np.array(card["classes"], dtype=object)
    k = len(classes)
    out = pa.table({"id": table["id"], "label": pa.array(classes[proba.argmax(1)] if len(proba) else [], pa.string()),
                    "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1).astype(np.float32)), k)})
    out = out.replace_schema_metadata({b"mmfeat.head": json.dumps({"head": head_dir, "classes": card["classes"],
                                                                    "config_ids": trained}).encode()})
    from .artifacts import resolve_head_dir

    run = resolve_head_dir(head_dir)
    head_name = os.path.basename(os.path.dirname(os.path.dirname(run))) if os.path.basename(
        os.path.dirname(run)) == "runs" else os.path.basename(run.rstrip("/"))
    directory = files.join(sets[0].path, "_predictions")
    path = files.join(directory, f"{head_name}.parquet")
    st.fs.create_dir(directory, recursive=True)
    tmp = files.staging_path(directory, ".parquet")
    pq.write_table(out, tmp, filesystem=st.fs, compression="zstd")
    st.fs.move(tmp, path)
    return {"path": path, "rows": out.num_rows}
