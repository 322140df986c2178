"""The store's semantics for a nightly ETL on an edited manifest (issue #11's six observations)."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import SAMPLE
from helpers import HashTextExtractor, write_text_manifest
from pipeline.errors import MmfeatError, StoreError
from pipeline.extract import TooManyRejects, extract
from pipeline.store import FeatureStore


def _rewrite(path, edit):
    rows = [json.loads(line) for line in open(path)]
    rows = [r for r in (edit(r) for r in rows) if r is not None]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_edited_labels_splits_texts_and_removed_items_reach_readers(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 40)
    first = extract(manifest, "text", "test-hash", store=store, dataset="night")
    fs = FeatureStore(store).resolve(first["feature_set"])
    before = dict(zip(*[fs.table()[c].to_pylist() for c in ("id", "features")]))

    def edit(r):
        if r["id"] == "t000003":
            return {**r, "label": "zz", "split": "test"}
        if r["id"] == "t000004":
            return {**r, "text": "a brand new text"}
        return None if r["id"] == "t000005" else r

    _rewrite(manifest, edit)
    HashTextExtractor.calls.clear()
    second = extract(manifest, "text", "test-hash", store=store, dataset="night")
    assert sum(HashTextExtractor.calls) == 1 and second["processed"] == 1  # only the changed text
    assert second["changes"] == {"added": 0, "removed": 1, "content_changed": 1, "metadata_changed": 1}
    table = fs.table()
    rows = {r["id"]: r for r in table.to_pylist()}
    assert table.num_rows == 39 and "t000005" not in rows
    assert (rows["t000003"]["label"], rows["t000003"]["split"]) == ("zz", "test")
    assert rows["t000004"]["features"] != before["t000004"]  # re-extracted from the new text
    assert rows["t000006"]["features"] == before["t000006"]
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM night__test_hash").fetchone()[0] == 39
    assert con.execute("SELECT label FROM night__test_hash WHERE id = 't000003'").fetchone()[0] == "zz"
    ids, x, labels = fs.numpy(split="test")  # README's example: filters on a column it does not return
    assert "t000003" in ids and x.shape[1] == 8


def test_replaced_file_bytes_are_reextracted_and_labels_added_later_apply(store, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(os.path.join(SAMPLE, "images", "circles"), root / "flat")
    folder = str(root / "flat")
    first = extract(folder, "image", "cnn", store=store)
    fs = FeatureStore(store).resolve(first["feature_set"])
    assert set(fs.table()["label"].to_pylist()) == {None}
    victim = sorted(os.listdir(folder))[0]
    shutil.copy(os.path.join(SAMPLE, "images", "stripes", "stripes_00.jpg"), os.path.join(folder, victim))
    manifest = root / "flat" / "labels.csv"  # the same ids, now labelled
    names = sorted(f for f in os.listdir(folder) if f.endswith((".png", ".jpg")))
    manifest.write_text("id,path,label\n" + "".join(f"{n},{n},{'odd' if i % 2 else 'even'}\n" for i, n in enumerate(names)))
    second = extract(str(manifest), "image", "cnn", store=store, dataset=first["feature_set"].split("/")[0], rebind=True)
    assert second["processed"] == 1 and second["changes"]["content_changed"] == 1
    assert second["changes"]["metadata_changed"] == len(names)  # every label went from NULL to a value
    labels = dict(zip(fs.table()["id"].to_pylist(), fs.table()["label"].to_pylist()))
    assert labels[names[0]] == "even" and labels[names[1]] == "odd" and None not in labels.values()


def test_manifests_named_manifest_get_their_folder_name_and_never_merge(store, tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        write_text_manifest(str(tmp_path / name / "manifest.jsonl"), 6)
    a = extract(str(tmp_path / "cats" / "manifest.jsonl"), "text", "test-hash", store=store)
    b = extract(str(tmp_path / "dogs" / "manifest.jsonl"), "text", "test-hash", store=store)
    assert a["feature_set"].startswith("cats/") and b["feature_set"].startswith("dogs/")
    with pytest.raises(StoreError, match="bound to .*cats.*--dataset"):
        extract(str(tmp_path / "dogs" / "manifest.jsonl"), "text", "test-hash", store=store, dataset="cats")


def test_several_configs_keep_names_valid(store, tmp_path, capsys):
    from pipeline.cli import run

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 10)
    one = extract(manifest, "text", "test-hash", store=store, dataset="d")
    two = extract(manifest, "text", "test-hash", {"salt": "x"}, store=store, dataset="d")
    assert run(["query", "SELECT count(*) AS n FROM d__test_hash", "--store", store]) == 0
    captured = capsys.readouterr()
    assert "10" in captured.out and f"view d__test_hash = {two['feature_set']}" in captured.err
    views = dict(FeatureStore(store).views()[0])
    assert views["d__test_hash"].name == two["feature_set"]
    assert views[f"d__test_hash_{one['feature_set'].rsplit('-', 1)[1]}"].name == one["feature_set"]
    # The documented raw recipe: one set's folder (ls --json "parts_glob"), joined with the current items.
    import duckdb

    s = FeatureStore(store).resolve(one["feature_set"]).summary()
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{s['parts_glob']}') p JOIN read_parquet('{s['items_path']}') i "
                   "ON p.item = i.id AND p.content = i.content").fetchall()[0][0]
    assert n == 10


def test_runs_that_reject_too_much_fail_and_missing_columns_fail_first(store, tmp_path):
    from pipeline.cli import run

    texts = os.path.join(SAMPLE, "texts.jsonl")
    with pytest.raises(MmfeatError, match="no 'path' column"):
        extract(texts, "image", store=store)
    assert not os.path.exists(store)  # refused before anything was read or written
    bad = tmp_path / "bad.csv"
    bad.write_text("id,path\n" + "".join(f"x{i},nowhere/{i}.png\n" for i in range(8)) + "ok,good.png\n")
    shutil.copy(os.path.join(SAMPLE, "images", "circles", "circles_01.png"), tmp_path / "good.png")
    with pytest.raises(TooManyRejects, match=r"8 of 9 items rejected \(89% > max_reject_fraction=0.5\): missing_file 8"):
        extract(str(bad), "image", store=store)
    assert run(["extract", str(bad), "--modality", "image", "--store", store, "--max-reject-fraction", "0.9"]) == 0


def test_retryable_rejects_are_retried_on_request(store, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\na,a.txt\nb,b.txt\n")
    (tmp_path / "a.txt").write_text("hello there")
    s = extract(str(manifest), "text", "word2vec", {"min_count": "1"}, store=store, max_reject_fraction=1)
    fs = FeatureStore(store).resolve(s["feature_set"])
    assert fs.rejects().to_pylist()[0]["reason"] == "missing_file" and fs.rejects()["retryable"].to_pylist() == [True]
    assert extract(str(manifest), "text", "word2vec", {"min_count": "1"}, store=store)["processed"] == 0
    again = extract(str(manifest), "text", "word2vec", {"min_count": "1"}, store=store, retry_rejects=True,
                    max_reject_fraction=1)
    assert again["processed"] == 1 and again["rejected"] == 1
    (tmp_path / "b.txt").write_text("hello again")  # the file appears: new content, extracted without asking
    assert extract(str(manifest), "text", "word2vec", {"min_count": "1"}, store=store)["processed"] == 1


def test_extractor_version_is_part_of_the_id_and_names_are_unique(store, tmp_path, monkeypatch):
    from pipeline.registry import register_alias, register_extractor

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 5)
    v1 = extract(manifest, "text", "test-hash", store=store)
    monkeypatch.setattr(HashTextExtractor, "version", "2")
    v2 = extract(manifest, "text", "test-hash", store=store)
    assert v1["feature_set"] != v2["feature_set"] and v2["processed"] == 5

    class Impostor(HashTextExtractor):
        name = "test-hash"

    with pytest.raises(ValueError, match="taken by helpers.HashTextExtractor"):
        register_extractor(Impostor)
    register_extractor(HashTextExtractor)  # re-importing the same class is fine
    register_alias("old-hash", "test-hash")
    with pytest.warns(DeprecationWarning, match="renamed"):
        old = extract(manifest, "text", "old-hash", store=store)
    assert old["feature_set"] == v2["feature_set"]
    assert FeatureStore(store).resolve("m/old-hash-" + v2["feature_set"].rsplit("-", 1)[1]).name == v2["feature_set"]


def test_fitted_state_is_shared_through_fit_on(store, tmp_path):
    from pipeline.heads import predict, train_head

    rng = np.random.default_rng(0)
    words = {"a": "apple pear fruit juice sweet", "b": "engine wheel road car drive"}

    def write(path, n, start):
        with open(path, "w") as f:
            for i in range(start, start + n):
                label = "ab"[i % 2]
                text = " ".join(rng.choice(words[label].split(), 6))
                f.write(json.dumps({"id": f"x{i}", "text": text, "label": label}) + "\n")
        return path

    (tmp_path / "news").mkdir()
    train = extract(write(tmp_path / "news" / "train.jsonl", 60, 0), "text", "word2vec", {"min_count": "1"}, store=store)
    assert train["feature_set"].startswith("news-train/")
    card = train_head([train["feature_set"]], None, store, str(tmp_path / "head"))
    new = extract(write(tmp_path / "new.jsonl", 10, 100), "text", "word2vec", {"min_count": "1"}, store=store,
                  fit_on="news-train")
    assert new["feature_set"].split("-")[-1] == train["feature_set"].split("-")[-1]  # the same config_id
    out = predict(card["path"], new["feature_set"], store)
    assert out["rows"] == 10
    with pytest.raises(MmfeatError, match="no fitted word2vec state"):
        extract(str(tmp_path / "new.jsonl"), "text", "word2vec", {"min_count": "2"}, store=store, fit_on="news-train",
                dataset="other")
    with pytest.raises(MmfeatError, match="learns nothing from a corpus"):
        extract(str(tmp_path / "new.jsonl"), "text", "test-hash", store=store, fit_on="news-train")


def test_gc_drops_rows_that_left_the_view_and_rm_removes(store, tmp_path):
    from pipeline.store.maintenance import gc, remove

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 30)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    _rewrite(manifest, lambda r: None if r["id"] < "t000012" else ({**r, "text": "changed"} if r["id"] == "t000020" else r))
    extract(manifest, "text", "test-hash", store=store, shard_size=10)
    fs = FeatureStore(store).resolve(s["feature_set"])
    before = fs.table()
    assert fs.keys().num_rows == 31 and before.num_rows == 18
    report = gc(FeatureStore(store))
    assert report["rows_dropped"] == 13 and report["shards_deleted"] == 1 and report["shards_rewritten"] == 2
    assert fs.keys().num_rows == 18 and fs.table().equals(before)
    assert gc(FeatureStore(store))["rows_dropped"] == 0
    remove(FeatureStore(store), s["feature_set"])
    assert FeatureStore(store).feature_sets() == []
    with pytest.raises(StoreError, match="nothing to remove"):
        remove(FeatureStore(store), "nope")
