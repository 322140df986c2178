"""Knowing your data from its stored features: neighbours (exact and through the set's index, never stale),
audits (duplicates, leakage, label errors, outliers) with a report, drift against a head, leakage counted in
every head card, near-copies kept in one split, texts readable beside their rows."""
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE
from pipeline.cli import run
from pipeline.errors import MmfeatError
from pipeline.extract import extract
from pipeline.store import FeatureStore, import_arrays


def _vectors(store, n=12000, dim=32, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = (centres[rng.integers(40, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    prov = {"format": 2, "dataset": "vec", "extractor": "v", "extractor_version": "1", "config": {},
            "config_id": "f" * 64, "weights_sha256": None, "dim": dim, "versions": {}, "created": "now"}
    ids = ids or [f"v{i:05d}" for i in range(n)]
    return import_arrays(FeatureStore(store), prov, ids, x, [str(i % 3) for i in range(n)]), x


def test_neighbours_exact_and_indexed_agree_and_the_index_follows_the_view(store):
    fs, x = _vectors(store)
    exact = fs.neighbors(["v00001", "v00002"], k=5, method="exact")
    indexed = fs.neighbors(["v00001", "v00002"], k=5, method="index")
    assert exact["query"].to_pylist()[0] == "v00001" and "v00001" not in exact["neighbor"].to_pylist()[:5]
    overlap = len(set(exact["neighbor"].to_pylist()) & set(indexed["neighbor"].to_pylist())) / 10
    assert overlap >= 0.9
    from pipeline.store import neighbors as nb

    nb._LOADED.clear()  # as a new process: the index comes from its files, with its keys
    assert fs.neighbors(["v00001", "v00002"], k=5, method="index").equals(indexed)
    index_file = os.path.join(fs.path, "_index", "ivf-cosine.faiss")
    os.remove(index_file + ".json")  # a writer killed before its record: rebuilt, never served with wrong keys
    with open(index_file, "r+b") as f:
        f.truncate(100)
    nb._LOADED.clear()
    assert fs.neighbors(["v00001", "v00002"], k=5, method="index").equals(indexed)
    fs, _ = _vectors(store, n=11000)  # items removed: the index is updated, never served stale
    again = fs.neighbors(["v00001"], k=5, method="index")
    assert all(int(n[1:]) < 11000 for n in again["neighbor"].to_pylist())
    raw = fs.neighbors(None, np.asarray(x[:3]), k=3, method="exact")  # vectors from elsewhere
    assert raw.num_rows == 9 and raw["query"].to_pylist()[0] == "query-0"
    with pytest.raises(MmfeatError, match="no item"):
        fs.neighbors(["nope"])


def test_neighbours_of_raw_inputs_and_the_cli(tmp_path):
    store = str(tmp_path / "st")
    s = extract(os.path.join(SAMPLE, "images"), "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"},
                store=store, progress=False)
    assert run(["neighbors", s["feature_set"], "--source", os.path.join(SAMPLE, "images", "circles"),
                "--dataset", "new-circles", "-k", "3", "--store", store, "--json"]) == 0
    table = pq.read_table(os.path.join(s["path"], "_neighbors", "latest.parquet"))
    top = table.filter(np.asarray(table["rank"].to_pylist()) == 1)
    assert np.mean([label == "circles" for label in top["label"].to_pylist()]) > 0.8  # circles find circles
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM images__cnn_neighbors").fetchone()[0] == table.num_rows


def test_audit_finds_copies_leaks_label_errors_and_outliers(tmp_path):
    rows = [json.loads(line) for line in open(os.path.join(SAMPLE, "texts.jsonl"))]
    rows = [r for r in rows if r["text"].strip()]
    test = [r for r in rows if r["split"] == "test"]
    rows.append(dict(test[0], id="copy-of-test", split="train",
                     text=test[0]["text"].replace(" ", "  ", 1) + " indeed"))  # a light edit, in train
    rows.append(dict(rows[0], id="exact-twin"))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = str(tmp_path / "st")
    s = extract(str(manifest), "text", "tfidf", {"min_df": "1"}, store=store)
    assert run(["audit", s["feature_set"], "--store", store, "--set", "label_folds=3"]) == 0
    findings = pq.read_table(os.path.join(s["path"], "_audit", "latest.parquet")).to_pylist()
    assert {(f["id"], f["partner_id"]) for f in findings if f["kind"] == "leak"} >= {(test[0]["id"], "copy-of-test")}
    assert ("exact-twin", rows[0]["id"]) in {(f["id"], f["partner_id"]) for f in findings if f["kind"] == "duplicate"} \
        or (rows[0]["id"], "exact-twin") in {(f["id"], f["partner_id"]) for f in findings if f["kind"] == "duplicate"}
    assert any(f["kind"] == "outlier" for f in findings)
    report = open(os.path.join(s["path"], "_audit", "report.md")).read()
    assert "## leak" in report and test[0]["text"][:20] in report  # the text shows beside its id
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM m__tfidf_audit WHERE kind = 'leak'").fetchone()[0] >= 1
    # the head card counts the leak; copies_in_one_split keeps the copy with its original
    from pipeline.heads import train_head

    card = train_head([s["feature_set"]], None, store, str(tmp_path / "h"))
    assert card["data"]["leakage"]["test"] >= 1
    together = train_head([s["feature_set"]], {"copies_in_one_split": "true"}, store, str(tmp_path / "h2"))
    snap = {r["id"]: r["split"] for r in pq.read_table(os.path.join(together["path"], "items.parquet")).to_pylist()}
    assert snap[test[0]["id"]] == snap["copy-of-test"] and together["data"]["leakage"]["test"] == 0


def test_label_errors_are_found_in_flipped_labels(store):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    y = y.astype(str)
    flipped = np.random.default_rng(0).permutation(len(y))[:60]
    y[flipped] = np.where(y[flipped] == "1", "7", "1")
    prov = {"format": 2, "dataset": "digits", "extractor": "px", "extractor_version": "1", "config": {},
            "config_id": "a" * 64, "weights_sha256": None, "dim": 64, "versions": {}, "created": "now"}
    fs = import_arrays(FeatureStore(store), prov, [f"d{i:04d}" for i in range(len(y))], x, list(y))
    from pipeline.insight import audit

    result = audit(fs.name, {"label_folds": "5"}, store)
    found = {f["id"] for f in pq.read_table(result["path"]).to_pylist() if f["kind"] == "label_error"}
    hits = len(found & {f"d{i:04d}" for i in flipped})
    assert hits / 60 >= 0.6 and hits / max(len(found), 1) >= 0.5


def test_drift_against_a_head_tells_a_foreign_night_from_more_of_the_same(tmp_path):
    from pipeline.heads import train_head
    from pipeline.insight import drift

    store = str(tmp_path / "st")
    audio = os.path.join(SAMPLE, "audio", "manifest.csv")
    s = extract(audio, "audio", store=store, dataset="clips")
    head = train_head([s["feature_set"]], None, store, str(tmp_path / "h"))["path"]
    same = drift(s["feature_set"], head, "all", store)
    assert same["domain_auc"] < 0.6 and not same["drifted"] and same["predicted_psi"] is not None
    import soundfile as sf

    night = tmp_path / "night"
    night.mkdir()
    rng = np.random.default_rng(0)
    rows = ["id,path,label"]
    for i in range(24):  # silence-free clicks at 8 kHz: not tones, noise or chirps
        y = np.zeros(8000, np.float32)
        y[::400] = 0.9
        sf.write(night / f"click{i}.wav", y + rng.normal(0, 0.01, 8000).astype(np.float32), 8000)
        rows.append(f"click{i},night/click{i}.wav,tone")
    manifest = tmp_path / "clips.csv"
    with open(audio) as f:
        lines = f.read().splitlines()[1:]
    manifest.write_text("\n".join(rows + [f"{line.split(',')[0]},{os.path.join(SAMPLE, 'audio', line.split(',')[1])},"
                                           f"{line.split(',')[2]}" for line in lines]) + "\n")
    extract(str(manifest), "audio", store=store, dataset="clips", rebind=True, allow_absolute=True,
            max_reject_fraction=1.0)
    foreign = drift(s["feature_set"], head, "latest", store)
    assert foreign["rows"]["current"] == 24 and foreign["drifted"] and foreign["domain_auc"] > 0.9
    assert run(["drift", s["feature_set"], "--reference", head, "--store", store, "--json"]) == 0
    with pytest.raises(MmfeatError, match="neither a head nor a run"):
        drift(s["feature_set"], "no-such-head", "latest", store)


def test_texts_are_readable_beside_their_rows(store):
    s = extract(os.path.join(SAMPLE, "texts.jsonl"), "text", "word2vec", {"min_count": "1"}, store=store)
    fs = FeatureStore(store).resolve(s["feature_set"])
    table = fs.table(columns=["id", "preview"])
    assert table["preview"][0].as_py().startswith(table["id"][0].as_py().split("-")[0].capitalize()[:3]) or \
        len(table["preview"][0].as_py()) > 20
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT preview FROM texts__word2vec LIMIT 1").fetchone()[0]


def test_the_audit_help_shows_the_config_defaults():
    import dataclasses

    from pipeline.cli import AUDIT_KEYS
    from pipeline.insight import AuditConfig

    assert AUDIT_KEYS == ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(AuditConfig))
