"""Apply a saved head to feature sets and store the predictions as Parquet."""
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
from .data import input_column, joined_table, label_values
from .remote import is_remote, names
from .model import predict_proba
from .validate import read_card, tunes_network


def predict(head_dir: str, feature_sets: list[str] | str, store: str | None = None) -> dict:
    """Predict every row of the feature set(s); refuses sets whose config_id the head was not trained on.
    ``head_dir``: a head folder or run folder, or the name of a head in the store (local or S3).

    Writes ``<set>/_predictions/<head>.parquet`` with ``id, predicted, probability`` (of the predicted
    class), ``probabilities`` (map class -> probability) and the true ``label`` where the items have one;
    returns its path, the row count, the predicted class counts and, with labels, the accuracy."""
    st = FeatureStore(store)
    run = os.path.abspath(resolve_head_dir(head_dir, st))
    model, card = load_head(run)
    specs = [feature_sets] if isinstance(feature_sets, str) else list(feature_sets)
    sets = [st.resolve(s) for s in specs]
    trained = [s["config_id"] for s in card["feature_sets"]]
    got = [s.config_id for s in sets]
    if got != trained:
        raise MmfeatError(f"head was trained on config_id(s) {[t[:12] for t in trained]}, "
                          f"not {[g[:12] for g in got]}: features would not mean the same thing")
    label = card.get("label", "label")
    std = card["standardization"]
    mean, scale = np.asarray(std["mean"], np.float32), np.asarray(std["std"], np.float32)
    classes = np.array(card["classes"], dtype=object)
    head_name = _head_name(run)
    metadata = {b"mmfeat.head": json.dumps({"head": run, "name": head_name, "classes": card["classes"],
                                            "config_ids": trained}).encode()}
    path = files.join(sets[0].path, "_predictions", f"{head_name}.parquet")
    directory = path.rsplit("/", 1)[0]
    st.fs.create_dir(directory, recursive=True)
    tmp = files.staging_path(directory, ".parquet")
    predicted, truth_all = [], []
    writer = None
    try:
        for table, x in _batches(sets, input_column(card["head"], sets)):  # per part file
            if x.shape[-1] != card["dim"]:
                raise MmfeatError(f"the feature sets give {x.shape[1]} features, the head expects {card['dim']}")
            if card["head"] == "sequence":
                from .sequence import predict_sequences

                proba = predict_sequences(model, x, mean, scale, float(card.get("temperature", 1.0)))
            elif card["head"] == "finetune" and not tunes_network(card):
                from .finetune import predict_top

                proba = predict_top(model, x, card["data"]["finetune"]["shape"], float(card.get("temperature", 1.0)))
            else:
                proba = predict_proba(model, x, mean, scale, temperature=float(card.get("temperature", 1.0)))
            out = _prediction_table(table, proba, classes, label)
            writer = writer or pq.ParquetWriter(tmp, out.schema.with_metadata(metadata), filesystem=st.fs,
                                                compression="zstd")
            writer.write_table(out.replace_schema_metadata(metadata))
            predicted.append(out["predicted"].to_numpy(zero_copy_only=False))
            truth_all.append(out["label"].to_numpy(zero_copy_only=False))
        if writer is None:
            nothing = pa.table({"id": pa.array([], pa.string()), "meta": pa.nulls(0, META_TYPE),
                                "label": pa.array([], pa.string())})
            empty = _prediction_table(nothing, np.zeros((0, len(classes)), np.float32), classes, label)
            writer = pq.ParquetWriter(tmp, empty.schema.with_metadata(metadata), filesystem=st.fs, compression="zstd")
        writer.close()
        files.fsync(st.fs, tmp)
        st.fs.move(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        files.delete_if_exists(st.fs, tmp)
        raise
    best = np.concatenate(predicted) if predicted else np.zeros(0, object)
    truth = np.concatenate(truth_all) if truth_all else np.zeros(0, object)
    n = len(best)
    labelled = np.array([t is not None for t in truth], bool)
    counts = dict(zip(*np.unique(best.astype(str), return_counts=True))) if n else {}
    summary = {"path": path, "rows": n, "head": run, "predicted_counts": {str(c): int(v) for c, v in counts.items()}}
    if labelled.any():
        summary["accuracy"] = float(np.mean(best[labelled] == truth[labelled]))
        summary["labelled"] = int(labelled.sum())
    return summary


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
        config = fs.manifest["config"]
        overrides = {k: v for k, v in config.items() if k not in runtime or (k == "weights" and v)}
        if overrides.get("weights") and not os.path.isfile(overrides["weights"]) and tunes_network(card):
            from .network import network_weights  # another machine: the run's own copy of the network

            overrides["weights"] = network_weights(run, card["data"]["finetune"])
        summary = extract(source, cls.modality, cls.name, overrides, dataset=dataset, store=store, progress=False,
                          fit_on=fs.manifest["dataset"] if cls.corpus_fitted else None)
        specs.append(summary["feature_set"])
        runs.append({k: summary.get(k) for k in ("feature_set", "rows", "rejected", "processed")})
    result = predict(run, specs, store)
    result.update(feature_sets=specs, extracted=runs)
    return result


def _batches(sets, column: str = "features"):
    """(id/label/meta table, features) batches: per part file for one set, the whole join for several.
    ``column="frames"``: padded frame sequences with their mask (sequence heads)."""
    if len(sets) == 1:
        for table in sets[0].iter_tables(["id", "label", "meta", column]):
            if column == "frames":
                from .sequence import padded

                yield table, padded(table["frames"], sets[0].manifest["frame_dim"])
            else:
                yield table, feature_matrix(table["features"], sets[0].dim)
        return
    table, x, _ = joined_table(sets, "drop")
    yield table, x


def _prediction_table(table: pa.Table, proba: np.ndarray, classes: np.ndarray, label: str) -> pa.Table:
    n, k = proba.shape[0], len(classes)
    best = proba.argmax(1) if n else np.zeros(0, np.int64)
    truth = label_values(table, label) if n else np.zeros(0, object)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    return pa.table({"id": table["id"], "predicted": pa.array(classes[best] if n else [], pa.string()),
                     "probability": pa.array(proba.max(1) if n else np.zeros(0), pa.float32()),
                     "probabilities": pa.MapArray.from_arrays(offsets, pa.array(np.tile(classes, n), pa.string()),
                                                              pa.array(proba.reshape(-1), pa.float32())),
                     "label": pa.array(truth, pa.string())})


def _head_name(run: str) -> str:
    """The head's folder name (``<head>/runs/<run>`` -> ``<head>``), usable as a file and view name."""
    parent = os.path.dirname(run)
    name = os.path.basename(os.path.dirname(parent)) if os.path.basename(parent) == "runs" else os.path.basename(run)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def list_heads(store: str | None = None) -> list[dict]:
    """The heads under ``<store>/_heads``: name, latest run, label, feature sets and test metrics."""
    from .train import heads_root

    st = FeatureStore(store)
    root = heads_root(st)
    out = []
    for name in names(st) if is_remote(st) else sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            run = resolve_head_dir(name if is_remote(st) else os.path.join(root, name), st)
            with open(os.path.join(run, "head.json")) as f:
                card = json.load(f)
        except (MmfeatError, OSError, ValueError):
            continue
        m = card.get("metrics", {})
        out.append({"name": name, "run": run, "head": card.get("head"), "label": card.get("label"),
                    "feature_sets": [s.get("name") for s in card.get("feature_sets", [])],
                    "accuracy": m.get("accuracy"), "accuracy_ci95": m.get("accuracy_ci95"),
                    "macro_f1": m.get("macro_f1"), "n_test": m.get("n_test")})
    return out
