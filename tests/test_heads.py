import json
import os

import numpy as np
import pytest

from pipeline.errors import MmfeatError
from pipeline.heads import predict, train_head
from pipeline.store import FeatureStore, features_table
from pipeline.store.featureset import empty_rejects


def _set(store, dataset, x, y, splits=None, extractor="digits", config_id=None):
    from pipeline.config import sha256_text

    prov = {"format": 1, "dataset": dataset, "extractor": extractor, "extractor_version": "1", "config": {},
            "config_id": config_id or sha256_text(extractor + dataset), "weights_sha256": None, "dim": x.shape[1],
            "versions": {}, "created": "2026-01-01T00:00:00+00:00", "frame_dim": None}
    fs = FeatureStore(store).create(prov)
    ids = [f"i{i:05d}" for i in range(len(x))]
    splits = splits if splits is not None else [None] * len(x)
    fs.write_shard("0" * 16, features_table(ids, [None if v is None else str(v) for v in y], splits, ids,
                                           x.astype(np.float32)), empty_rejects(), len(x))
    return fs.name


def test_linear_and_mlp_heads_match_sklearn_on_digits(store, tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    name = _set(store, "digits", x, y)
    for head in ("linear", "mlp"):
        card = train_head([name], {"head": head}, store, str(tmp_path / head))
        m = card["metrics"]
        assert m["accuracy"] >= m["sklearn_logreg"]["accuracy"] - 0.015, (head, m["accuracy"], m["sklearn_logreg"])
        assert m["accuracy"] > 0.9 and m["majority_baseline_accuracy"] < 0.2
        for f in ("head.safetensors", "head.json", "confusion.png", "learning_curve.png", "report.md"):
            assert os.path.getsize(tmp_path / head / f) > 0
    again = train_head([name], {"head": "linear"}, store, str(tmp_path / "again"))
    first = json.load(open(tmp_path / "linear" / "head.json"))["metrics"]
    assert (again["metrics"]["accuracy"], again["metrics"]["confusion_matrix"]) == \
        (first["accuracy"], first["confusion_matrix"])  # deterministic under the seed
    out = predict(str(tmp_path / "linear"), name, store)
    import pyarrow.parquet as pq

    pred = pq.read_table(out["path"])
    assert pred.num_rows == len(x) and pred.schema.field("probabilities").type.list_size == 10


def test_refusals(store, tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    one = _set(store, "one", x, ["a"] * 40)
    with pytest.raises(MmfeatError, match="single class"):
        train_head([one], None, store)
    none = _set(store, "none", x, [None] * 40)
    with pytest.raises(MmfeatError, match="no labelled rows"):
        train_head([none], None, store)
    y = ["a", "b"] * 20
    a = _set(store, "fused", x, y, ["train"] * 30 + ["test"] * 10, extractor="ex1")
    b = _set(store, "fused", x, y, ["train"] * 25 + ["test"] * 15, extractor="ex2")
    with pytest.raises(MmfeatError, match="leak"):
        train_head([a, b], None, store)
    good = _set(store, "ok", x, y, extractor="ex1")
    card = train_head([good], None, store, str(tmp_path / "h"))
    other = _set(store, "ok", x, y, extractor="ex2")
    with pytest.raises(MmfeatError, match="trained on config_id"):
        predict(card["path"], other, store)


def test_fusion_joins_on_id_and_reports_missing(store, tmp_path):
    rng = np.random.default_rng(1)
    y = np.array(["a", "b"] * 50)
    x1 = rng.normal(size=(100, 4)) + (y == "a")[:, None]
    a = _set(store, "mm", x1, y, extractor="img")
    b = _set(store, "mm", rng.normal(size=(90, 2)), y[:90], extractor="txt")
    card = train_head([a, b], None, store, str(tmp_path / "f"))
    assert card["dim"] == 6 and card["data"]["joined"] == 90 and card["data"]["missing_from_some_set"] == 10
    with pytest.raises(MmfeatError, match="missing from some feature set"):
        train_head([a, b], {"missing": "error"}, store)


def test_heads_on_sample_data(sample_store, tmp_path):
    root, summaries = sample_store
    for modality, s in summaries.items():
        assert s["rejected"] >= 2, modality
        card = train_head([s["feature_set"]], None, root, str(tmp_path / modality))
        assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"], modality
