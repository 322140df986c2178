import json
import os

import numpy as np
import pytest

from pipeline.errors import MmfeatError
from pipeline.heads import predict, train_head
from pipeline.store import FeatureStore, import_arrays


def _set(store, dataset, x, y, splits=None, extractor="digits", config_id=None):
    from pipeline.config import sha256_text

    prov = {"format": 2, "dataset": dataset, "extractor": extractor, "extractor_version": "1", "config": {},
            "config_id": config_id or sha256_text(extractor + dataset), "weights_sha256": None, "dim": x.shape[1],
            "versions": {}, "created": "2026-01-01T00:00:00+00:00", "frame_dim": None}
    ids = [f"i{i:05d}" for i in range(len(x))]
    return import_arrays(FeatureStore(store), prov, ids, x, [None if v is None else str(v) for v in y], splits).name


def first_card_n_test(head):
    return json.load(open(head / "latest" / "head.json"))["metrics"]["n_test"]


def test_linear_and_mlp_heads_match_sklearn_on_digits(store, tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    name = _set(store, "digits", x, y)
    for head in ("linear", "mlp"):
        card = train_head([name], {"head": head}, store, str(tmp_path / head))
        m = card["metrics"]
        assert m["accuracy"] >= m["sklearn_logreg"]["accuracy"] - 0.015, (head, m["accuracy"], m["sklearn_logreg"])
        assert m["accuracy"] > 0.9 and m["majority_baseline_accuracy"] < 0.2
        for f in ("head.safetensors", "head.json", "confusion.png", "validation.png", "report.md"):
            assert os.path.getsize(tmp_path / head / "latest" / f) > 0
    again = train_head([name], {"head": "linear"}, store, str(tmp_path / "again"))
    first = json.load(open(tmp_path / "linear" / "latest" / "head.json"))["metrics"]
    assert (again["metrics"]["accuracy"], again["metrics"]["confusion_matrix"]) == \
        (first["accuracy"], first["confusion_matrix"])  # deterministic under the seed
    out = predict(str(tmp_path / "linear"), name, store)
    import pyarrow.parquet as pq

    pred = pq.read_table(out["path"])
    assert pred.num_rows == len(x) and pred.column_names == ["id", "predicted", "probability", "probabilities", "label",
                                                             "seen_as"]
    # accuracy apart on what the head trained on, its test items, and items it never saw
    assert out["labelled_test"] == first_card_n_test(tmp_path / "linear") and "labelled_unseen" not in out
    assert out["accuracy_trained_on"] >= out["accuracy_test"] - 0.05
    first = pred.slice(0, 1).to_pylist()[0]
    assert len(first["probabilities"]) == 10 and abs(sum(p for _, p in first["probabilities"]) - 1) < 1e-4
    assert first["probability"] == max(p for _, p in first["probabilities"])
    assert out["accuracy"] > 0.9 and sum(out["predicted_counts"].values()) == len(x)
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM digits__linear_predictions WHERE predicted = label").fetchone()[0] > 0.9 * len(x)


def test_refusals(store, tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    one = _set(store, "one", x, ["a"] * 40)
    with pytest.raises(MmfeatError, match="single class"):
        train_head([one], None, store)
    none = _set(store, "none", x, [None] * 40)
    with pytest.raises(MmfeatError, match="no labelled rows"):
        train_head([none], None, store)
    y = ["a", "b"] * 20
    a = _set(store, "fused-a", x, y, ["train"] * 30 + ["test"] * 10, extractor="ex1")
    b = _set(store, "fused-b", x, y, ["train"] * 25 + ["test"] * 15, extractor="ex2")
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
    a = _set(store, "mm-images", x1, y, extractor="img")
    b = _set(store, "mm-texts", rng.normal(size=(90, 2)), y[:90], extractor="txt")
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


def test_multi_target_heads_share_features_and_read_meta_columns(store, tmp_path):
    import pyarrow as pa

    from sklearn.datasets import load_digits

    from pipeline.heads import train_heads
    from pipeline.store.schema import META_TYPE

    x, y = load_digits(return_X_y=True)
    x, y = x[:600], y[:600]
    parity = ["odd" if v % 2 else "even" for v in y]
    big = [None if i % 10 == 0 else ("big" if v >= 5 else "small") for i, v in enumerate(y)]  # some unlabelled
    meta = pa.array([[("parity", p)] + ([("size", b)] if b else []) for p, b in zip(parity, big)], META_TYPE)
    from pipeline.config import sha256_text

    prov = {"format": 2, "dataset": "mt", "extractor": "digits", "extractor_version": "1", "config": {},
            "config_id": sha256_text("mt"), "weights_sha256": None, "dim": 64, "versions": {},
            "created": "2026-01-01T00:00:00+00:00", "frame_dim": None}
    ids = [f"i{i:05d}" for i in range(len(x))]
    fs = import_arrays(FeatureStore(store), prov, ids, x, [str(v) for v in y], meta=meta)
    cards = train_heads([fs.name], ["label", "parity", "size"], None, store, str(tmp_path / "mt"))
    assert [c["label"] for c in cards] == ["label", "parity", "size"]
    assert [c["classes"] for c in cards[1:]] == [["even", "odd"], ["big", "small"]]
    assert cards[2]["data"]["unlabelled_dropped"] == 60
    for c in cards:
        # the head is refit on train + validation, the sklearn reference on train only: 0.02 is 2 test items
        assert c["metrics"]["accuracy"] >= c["metrics"]["sklearn_logreg"]["accuracy"] - 0.02, c["label"]
        assert os.path.exists(os.path.join(tmp_path, "mt", c["label"], "latest", "head.json"))
    with pytest.raises(MmfeatError, match="available: label, parity, size"):
        train_heads([fs.name], ["speaker"], None, store)


def test_stacked_linear_sweep_matches_separate_fits():
    import torch

    from pipeline.heads.linear import LinearParams
    from pipeline.heads.solvers import fit_linear_sweep, fit_one

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(300, 8)), dtype=torch.float32)
    y = torch.tensor((x[:, 0] + 0.5 * x[:, 1] > 0).long().numpy() + (x[:, 2] > 1).long().numpy())
    cfg = LinearParams(max_epochs=15, patience=100)
    stacked = fit_linear_sweep(x[:200], y[:200], x[200:], y[200:], 3, None, (1e-3, 1e-1), cfg, 0)
    for fit in stacked:
        torch.manual_seed(0)
        alone = fit_one(torch.nn.Linear(8, 3), x[:200], y[:200], x[200:], y[200:], None, fit.l2, cfg, 0)
        # the same objective, data order and optimizer: the same weights up to float rounding
        assert torch.allclose(fit.model.weight, alone.model.weight, atol=1e-4), fit.l2
        assert fit.epochs == alone.epochs and abs(fit.val_loss - alone.val_loss) < 1e-5


def test_lbfgs_linear_head_matches_sklearn_logistic_regression_at_the_same_c():
    import torch
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from pipeline.heads.solvers import fit_linear_lbfgs

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    for c in (0.1, 1.0):
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x, y)
        l2 = 1.0 / (c * len(y))  # sklearn: C·Σ loss + ½||W||²  ==  n·C·(mean loss + ½·l2·||W||²)
        xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
        fit = fit_linear_lbfgs(xt, yt, xt, yt, 3, None, (l2,))[0]
        with torch.no_grad():
            proba = torch.softmax(fit.model(xt), 1).numpy()
        # float32 L-BFGS vs float64 lbfgs on the same convex objective
        assert np.abs(proba - ref.predict_proba(x)).max() < 2e-3, c


def test_second_manifest_column_trains_its_own_head_on_sample_images(sample_store, tmp_path):
    from pipeline.heads import train_heads

    root, summaries = sample_store
    cards = train_heads([summaries["image"]["feature_set"]], ["label", "colour"], None, root, str(tmp_path))
    colour = cards[1]
    assert colour["classes"] == ["colour", "gray"] and colour["label"] == "colour"
    assert colour["metrics"]["accuracy"] > colour["metrics"]["majority_baseline_accuracy"]
    assert open(tmp_path / "colour" / "latest" / "report.md").read().startswith("# linear head for 'colour'")


def test_a_100_class_report_stays_readable_and_small(store, tmp_path):
    from pipeline.heads.report import inline_pictures, markdown

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(100), 12)
    x = rng.normal(size=(len(y), 16)) + np.eye(100)[y][:, :16] * 3
    card = train_head([_set(store, "many", x, [f"class{v:03d}" for v in y])], None, store, str(tmp_path / "many"))
    report = markdown(card, inline_pictures(card["path"]), card["path"])
    assert "most confused" in report and len(report) < 400_000


def test_refit_calibration_and_prototype_heads(store, tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    name = _set(store, "cal", x, y)
    card = train_head([name], None, store, str(tmp_path / "lin"))
    sizes = card["data"]["sizes"]
    assert card["refit"]["rows"] == sizes["train"] + sizes["val"] and card["temperature"] > 0
    assert 0 <= card["metrics"]["ece"] <= 1 and "ece_uncalibrated" in card["metrics"]
    assert "hidden" not in card["config"] and "lr" not in card["config"]  # a linear L-BFGS head has neither
    proto = train_head([name], {"head": "prototype"}, store, str(tmp_path / "proto"))
    assert proto["metrics"]["accuracy"] > 0.85 and proto["solver"] == "class means"
    out = predict(proto["path"], name, store)
    assert out["accuracy"] > 0.85


def test_streamed_linear_head_matches_the_in_memory_one(store, tmp_path):
    """Over memory_gb the linear head streams spilled features in chunks (several L-BFGS passes): the
    same objective, so the same choices and, to L-BFGS tolerance, the same head."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    y = [None if i % 40 == 0 else v for i, v in enumerate(y)]  # unlabelled rows are skipped by both paths
    name = _set(store, "digits-streamed", x, y)
    whole = train_head([name], {}, store, str(tmp_path / "whole"))
    tiny = 1e-4  # GiB: 1,797 x 64 float32 (0.46 MB) x 4 copies is over it; chunks of 1,024 rows
    streamed = train_head([name], {"memory_gb": str(tiny)}, store, str(tmp_path / "streamed"))
    assert "streamed" not in whole["data"] and streamed["data"]["streamed"]["chunk_rows"] == 1024
    assert streamed["solver"] == "lbfgs (streamed)"
    assert (streamed["selected"]["l2"], streamed["selected"]["class_weight"]) == \
        (whole["selected"]["l2"], whole["selected"]["class_weight"])
    assert abs(streamed["metrics"]["accuracy"] - whole["metrics"]["accuracy"]) <= 0.006
    assert streamed["refit"]["rows"] == whole["refit"]["rows"]
    np.testing.assert_allclose(streamed["standardization"]["mean"], whole["standardization"]["mean"], atol=1e-4)
    assert streamed["data"]["unlabelled_dropped"] == whole["data"]["unlabelled_dropped"] == 45
    out = predict(str(tmp_path / "streamed"), name, store)
    assert out["rows"] == len(x) and out["accuracy"] > 0.95


def test_sequence_head_on_frame_sequences(tmp_path):
    """Audio frames (frames=true) train the sequence head: masked conv + attention/mean pooling; padding
    does not leak into the pooled vector, and predict reads the frames again."""
    import torch

    from pipeline.extract import extract
    from pipeline.heads.sequence import SequenceHead

    head = SequenceHead(3, 2, 8, 0.0).eval()
    x = torch.randn(1, 5, 4)
    x[..., -1] = 1.0
    longer = torch.cat([x, torch.zeros(1, 7, 4)], dim=1)  # the same clip with 7 padded frames
    longer[0, 5:, :3] = 99.0  # garbage under the mask must not matter
    with torch.no_grad():
        torch.testing.assert_close(head(x), head(longer))
    root = str(tmp_path / "st")
    s = extract("sample_data/audio", "audio", "spectral", {"frames": "true"}, store=root, progress=False,
                max_reject_fraction=1.0)
    extract("sample_data/audio", "audio", "spectral", {"frames": "true"}, store=root, progress=False,
            label_from_name=r"(?P<label>[a-z]+)_", max_reject_fraction=1.0)
    card = train_head([s["feature_set"]], {"head": "sequence", "max_epochs": "20"}, root, str(tmp_path / "seq"))
    assert list(card["config"]["hidden"]) == [128] and card["data"]["sequence"]["frame_dim"] == 85
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
    out = predict(str(tmp_path / "seq"), s["feature_set"], root)
    assert out["rows"] == card["data"]["joined"]
    with pytest.raises(MmfeatError, match="frame sequences"):
        plain = extract("sample_data/audio", "audio", "spectral", {}, store=root, progress=False, max_reject_fraction=1.0)
        train_head([plain["feature_set"]], {"head": "sequence"}, root, str(tmp_path / "no"))


def test_late_fusion_pools_per_set_classifiers_and_never_trails_its_best_part(store, tmp_path):
    """Digit pixels (strong) fused with a few noisy columns (weak): early fusion shares one penalty; late
    fusion fits one classifier per set and pools their logits with weights fitted on validation. The card
    reports both on test, and the pool is one linear layer: the head predicts as any linear head."""
    import torch
    from sklearn.datasets import load_digits

    from pipeline.heads.fusion import pooled_linear

    x, y = load_digits(return_X_y=True)
    noisy = y[:, None] * 0.15 + np.random.default_rng(0).normal(size=(len(y), 3))
    strong = _set(store, "mm", x, y, extractor="pixels")
    weak = _set(store, "mm", noisy, y, extractor="noise")
    alone = train_head([strong], {"sklearn_baseline": "false"}, store, str(tmp_path / "alone"))
    card = train_head([strong, weak], {"fusion": "auto", "sklearn_baseline": "false"}, store, str(tmp_path / "f"))
    fusion = card["data"]["fusion"]
    assert fusion["chosen"] in ("early", "late") and fusion["mode"] == "auto"
    chosen = fusion[fusion["chosen"]]
    assert card["metrics"]["accuracy"] == pytest.approx(chosen["test_accuracy"], abs=1e-4)
    late = fusion["late"]
    assert [p["set"] for p in late["parts"]] == [strong, weak]
    assert all(p["weight"] >= 0 and p["temperature"] > 0 for p in late["parts"])
    assert late["test_accuracy"] >= alone["metrics"]["accuracy"] - 0.02
    forced = train_head([strong, weak], {"fusion": "late", "sklearn_baseline": "false"}, store, str(tmp_path / "l"))
    assert forced["data"]["fusion"]["chosen"] == "late"
    assert predict(forced["path"], [strong, weak], store)["accuracy"] >= forced["metrics"]["accuracy"] - 1e-9
    # the pool of linear layers is exactly one linear layer over the joined columns
    rng = torch.Generator().manual_seed(0)
    parts = [torch.nn.Linear(3, 4), torch.nn.Linear(2, 4)]
    xa, xb = torch.randn(5, 3, generator=rng), torch.randn(5, 2, generator=rng)
    w, b = pooled_linear(parts, [0.7, 0.2])
    with torch.no_grad():
        assert torch.allclose(torch.cat([xa, xb], 1) @ w.t() + b, 0.7 * parts[0](xa) + 0.2 * parts[1](xb), atol=1e-6)
    with pytest.raises(MmfeatError, match="fusion must be one of auto, early, late"):
        train_head([strong, weak], {"fusion": "sideways"}, store)
