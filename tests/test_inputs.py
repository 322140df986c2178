import os

import pytest

from helpers import write_text_manifest
from pipeline.errors import MmfeatError
from pipeline.extract import extract
from pipeline.inputs import load_dataset, resolve_paths
from pipeline.store import FeatureStore


def _files(tmp_path):
    root = tmp_path / "data"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.txt").write_text("a cat text")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "cats" / "link.txt")
    return root


def test_traversal_absolute_and_escaping_symlinks_refused(tmp_path, store):
    root = _files(tmp_path)
    manifest = root / "m.csv"
    manifest.write_text("id,path\nok,cats/a.txt\ndots,../secret.txt\nabs,%s\nlink,cats/link.txt\n" % (tmp_path / "secret.txt"))
    ds = load_dataset(str(manifest))
    paths, bad = resolve_paths(ds, ds.table["source"].to_pylist())
    assert paths[0] == str(root / "cats" / "a.txt")
    assert {i: b.reason for i, b in bad.items()} == {1: "unsafe_path", 2: "unsafe_path", 3: "unsafe_path"}
    s = extract(str(manifest), "text", "word2vec", {"min_count": "1"}, store=store, max_reject_fraction=1.0)
    rejects = FeatureStore(store).resolve(s["feature_set"]).rejects()
    assert sorted(rejects["id"].to_pylist()) == ["abs", "dots", "link"]
    assert set(rejects["stage"].to_pylist()) == {"resolve"}
    allowed = load_dataset(str(manifest), allow_absolute=True)
    assert 2 not in resolve_paths(allowed, allowed.table["source"].to_pylist())[1]


def test_duplicate_ids_are_named(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("id,text\nx,one\ny,two\nx,three\n")
    with pytest.raises(MmfeatError, match="duplicate ids.*x"):
        load_dataset(str(m))


def test_folder_layouts_with_and_without_splits(tmp_path):
    for split in ("train", "test"):
        for label in ("a", "b"):
            d = tmp_path / "s" / split / label
            d.mkdir(parents=True)
            (d / f"{split}{label}.txt").write_text("x")
    ds = load_dataset(str(tmp_path / "s"))
    assert sorted(ds.table["split"].to_pylist()) == ["test", "test", "train", "train"]
    assert sorted(ds.table["label"].to_pylist()) == ["a", "a", "b", "b"]
    flat = load_dataset(str(tmp_path / "s" / "train"), name="flat")
    assert flat.table["split"].null_count == 2 and flat.name == "flat"
    # deeper layouts (speaker/chapter/file) are labelled by their first folder; loose files stay, unlabelled
    deep = tmp_path / "speech" / "spk1" / "ch7"
    deep.mkdir(parents=True)
    (deep / "u1.flac").write_text("x")
    (tmp_path / "speech" / "loose.wav").write_text("x")
    table = load_dataset(str(tmp_path / "speech")).table.sort_by("id")
    assert table["id"].to_pylist() == ["loose.wav", "spk1/ch7/u1.flac"]
    assert table["label"].to_pylist() == [None, "spk1"]


def test_manifest_formats_agree(tmp_path):
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    jsonl = write_text_manifest(str(tmp_path / "m.jsonl"), 5)
    pq.write_table(pj.read_json(jsonl), str(tmp_path / "m.parquet"))
    a, b = load_dataset(jsonl), load_dataset(str(tmp_path / "m.parquet"))
    assert a.table.equals(b.table) and a.kind == b.kind == "text"


def test_bad_split_values_and_missing_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("id,text,split\nx,one,holdout\n")
    with pytest.raises(MmfeatError, match="unknown split"):
        load_dataset(str(m))
    m.write_text("name,other\nx,one\n")
    with pytest.raises(MmfeatError, match="no column holds the files or the texts.*--columns path=COLUMN"):
        load_dataset(str(m))
    m.write_text("name,text\nx,one\n")  # no id column: ids from the text, stable
    assert load_dataset(str(m)).table["id"].to_pylist() == load_dataset(str(m)).table["id"].to_pylist()


def test_ordinary_csvs_come_in_with_their_own_column_names(tmp_path):
    """filename,category; content,label; a headerless news file: no renaming, no invented ids by hand."""
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "files.csv").write_text("filename,category\na.jpg,cat\n")
    files = load_dataset(str(tmp_path / "files.csv"))
    assert (files.kind, files.table["id"].to_pylist(), files.table["label"].to_pylist()) == ("path", ["a.jpg"], ["cat"])
    (tmp_path / "texts.csv").write_text("content,label\nhello there,greet\nhello there,greet\nbye,part\n")
    texts = load_dataset(str(tmp_path / "texts.csv"))
    ids = texts.table["id"].to_pylist()
    assert texts.kind == "text" and len(set(ids)) == 3 and ids[1] == ids[0] + "-2"  # repeats numbered
    news = tmp_path / "news.csv"
    news.write_text('"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street"\n'
                    '"4","Stocks rise","Markets were up today."\n')
    with pytest.raises(MmfeatError, match="--no-header"):
        load_dataset(str(news))
    named = load_dataset(str(news), columns={"label": "c0", "text": "c1+c2"}, no_header=True)
    assert named.table["label"].to_pylist() == ["3", "4"]
    assert named.table["source"][1].as_py() == "Stocks rise\nMarkets were up today."
