"""Apply a saved head to feature sets (or to raw inputs) and store the predictions as Parquet."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MmfeatError
from ..store import FeatureStore, feature_matrix
from ..store import files
from ..store.schema import META_TYPE
from .artifacts import load_head, resolve_head_dir
from .card import read_card
from .data import joined_table, label_values
from .frames import padded
from .registry import kind_of_card


def predict(head_dir: str, feature_sets: list[str] | str, store: str | None = None) -> dict:
    """Predict every row of the feature set(s); refuses sets whose config_id the head was not trained on.
    ``head_dir``: a head folder or run folder, or the name of a head in the store (local or S3).

    Writes ``<set>/_predictions/<head>.parquet`` with ``id, predicted, probability`` (of the predicted
    class), ``probabilities`` (map class -> probability), the true ``label`` where the items have one and
    ``seen_as`` (the split the head used the item in: train, val, test, or null when it never saw it);
    returns its path, the row count, the predicted class counts and, with labels, the accuracy of every
    labelled row and, separately, of the head's test items and of the items it never saw."""
    st = FeatureStore(store)
    run = os.path.abspath(resolve_head_dir(head_dir, st))
    model, card = load_head(run)
    kind = kind_of_card(card)
    sets = [st.resolve(s) for s in ([feature_sets] if isinstance(feature_sets, str) else list(feature_sets))]
    trained, got = [s["config_id"] for s in card["feature_sets"]], [s.config_id for s in sets]
    if got != trained:
        raise MmfeatError(f"head was trained on config_id(s) {[t[:12] for t in trained]}, "
                          f"not {[g[:12] for g in got]}: features would not mean the same thing")
    head_name = _head_name(run)
    metadata = {b"mmfeat.head": json.dumps({"head": run, "name": head_name, "classes": card["classes"],
                                            "config_ids": trained}).encode()}
    path = files.join(sets[0].path, "_predictions", f"{head_name}.parquet")
    seen = _seen(run)
    outs = []
    with files.staged_output(st.fs, path, ".parquet") as tmp:
        writer = None
        try:
            for table, x in _batches(sets, kind.input_column(sets)):  # per part file (text items: their start)
                if x.shape[-1] != card["dim"]:
                    raise MmfeatError(f"the feature sets give {x.shape[-1]} features, the head expects {card['dim']}")
                proba = kind.predict(model, x, card)
                if not np.isfinite(proba).all():
                    raise MmfeatError(f"{run}: the head gives non-finite probabilities (a damaged or tampered head)")
                out = _prediction_table(table, proba, np.array(card["classes"], dtype=object), card.get("label", "label"),
                                        seen).replace_schema_metadata(metadata)
                writer = writer or pq.ParquetWriter(tmp, out.schema, filesystem=st.fs, compression="zstd")
                writer.write_table(out)
                outs.append(out.select(["predicted", "label", "seen_as"]))
            if writer is None:
                empty = _prediction_table(_empty_rows(), np.zeros((0, len(card["classes"])), np.float32),
                                          np.array(card["classes"], dtype=object), "label", seen)
                writer = pq.ParquetWriter(tmp, empty.schema.with_metadata(metadata), filesystem=st.fs, compression="zstd")
        finally:
            if writer is not None:
                writer.close()
    return {"path": path, "head": run, **_summary(pa.concat_tables(outs) if outs else None)}


def _empty_rows() -> pa.Table:
    return pa.table({"id": pa.array([], pa.string()), "meta": pa.nulls(0, META_TYPE), "label": pa.array([], pa.string())})


def _seen(run: str) -> dict[str, str]:
    """id -> the split the head used the item in (from the run's snapshot; empty for older heads)."""
    from .snapshot import SNAPSHOT

    path = os.path.join(run, SNAPSHOT)
    if not os.path.isfile(path):
        return {}
    table = pq.read_table(path, columns=["id", "split"])
    return dict(zip(table["id"].to_pylist(), table["split"].to_pylist()))


def _summary(table: pa.Table | None) -> dict:
    """Row count, predicted class counts and, with labels, accuracy overall, on the head's test items, on the
    items it trained or validated on, and on items it never saw (each with its count)."""
    if table is None or table.num_rows == 0:
        return {"rows": 0, "predicted_counts": {}}
    best = np.array(table["predicted"].to_pylist(), dtype=object)
    truth = np.array(table["label"].to_pylist(), dtype=object)
    seen = np.array(table["seen_as"].to_pylist(), dtype=object)
    counts = dict(zip(*np.unique(best.astype(str), return_counts=True)))
    out = {"rows": len(best), "predicted_counts": {str(c): int(v) for c, v in counts.items()}}
    labelled = np.array([t is not None for t in truth], bool)
    if labelled.any():
        out.update(accuracy=float(np.mean(best[labelled] == truth[labelled])), labelled=int(labelled.sum()))
        for name, mask in (("test", seen == "test"), ("trained_on", (seen == "train") | (seen == "val")),
                           ("unseen", np.array([s is None for s in seen]))):
            mask &= labelled
            if mask.any():
                out[f"accuracy_{name}"] = float(np.mean(best[mask] == truth[mask]))
                out[f"labelled_{name}"] = int(mask.sum())
    return out


def predict_source(head_dir: str, source: str, store: str | None = None, dataset: str | None = None) -> dict:
    """Predict raw inputs in one call: extract ``source`` (a folder, manifest or glob) with each of the
    head's feature set configs (a tuned network's weights, a fitted vocabulary's dataset included), then
    :func:`predict` on those sets. ``dataset``: the store name for these items (default: from ``source``).
    Returns predict's summary plus ``feature_sets`` and ``extracted`` (each extraction's summary)."""
    from ..extract import extract
    from ..registry import extractor_class

    st = FeatureStore(store)
    run = os.path.abspath(resolve_head_dir(head_dir, st))
    card = read_card(run)
    specs, runs = [], []
    for trained in card["feature_sets"]:
        try:
            fs = st.resolve(trained["name"])
        except MmfeatError:
            raise MmfeatError(f"the head's feature set {trained['name']} is not in {st.uri}: predicting raw inputs "
                              "extracts them as it was extracted (pass the store the head was trained on)") from None
        cls = extractor_class(fs.manifest["extractor"])
        runtime = {f.name for f in dataclasses.fields(cls.config_type) if f.metadata.get("runtime")}
        overrides = {k: v for k, v in fs.manifest["config"].items() if k not in runtime or (k == "weights" and v)}
        info = card.get("data", {}).get("finetune") or {}
        if overrides.get("weights") and not os.path.isfile(overrides["weights"]) and info.get("mode") == "network":
            from .network_set import network_weights  # another machine: the run's own copy of the network

            overrides["weights"] = network_weights(run, info)
        summary = extract(source, cls.modality, cls.name, overrides, dataset=dataset, store=store, progress=False,
                          fit_on=fs.manifest["dataset"] if cls.corpus_fitted else None)
        specs.append(summary["feature_set"])
        runs.append({k: summary.get(k) for k in ("feature_set", "rows", "rejected", "processed")})
    result = predict(run, specs, store)
    result.update(feature_sets=specs, extracted=runs)
    return result


def _batches(sets, column: str = "features"):
    """(id/label/meta table, features) batches: per part file for one set, the whole join for several.
    ``column="frames"``: padded frame sequences with their mask (sequence heads, text tops)."""
    if len(sets) == 1:
        extra = ["preview"] if sets[0].manifest.get("modality") == "text" else []  # read the errors beside them
        for table in sets[0].iter_tables(["id", "label", "meta", *extra, column]):
            if column == "frames":
                yield table, padded(table["frames"], sets[0].manifest["frame_dim"])
            else:
                yield table, feature_matrix(table["features"], sets[0].dim)
        return
    table, x, _ = joined_table(sets, "drop")
    yield table, x


def _prediction_table(table: pa.Table, proba: np.ndarray, classes: np.ndarray, label: str,
                      seen: dict[str, str]) -> pa.Table:
    n, k = proba.shape[0], len(classes)
    best = proba.argmax(1) if n else np.zeros(0, np.int64)
    truth = label_values(table, label) if n else np.zeros(0, object)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    return pa.table({"id": table["id"], "predicted": pa.array(classes[best] if n else [], pa.string()),
                     "probability": pa.array(proba.max(1) if n else np.zeros(0), pa.float32()),
                     "probabilities": pa.MapArray.from_arrays(offsets, pa.array(np.tile(classes, n), pa.string()),
                                                              pa.array(proba.reshape(-1), pa.float32())),
                     "label": pa.array(truth, pa.string()),
                     "seen_as": pa.array([seen.get(i) for i in table["id"].to_pylist()], pa.string()),
                     **({"preview": table["preview"]} if "preview" in table.column_names else {})})


def _head_name(run: str) -> str:
    """The head's folder name (``<head>/runs/<run>`` -> ``<head>``), usable as a file and view name."""
    parent = os.path.dirname(run)
    name = os.path.basename(os.path.dirname(parent)) if os.path.basename(parent) == "runs" else os.path.basename(run)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
