import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import write_text_manifest
from pipeline.errors import StoreError
from pipeline.extract import extract
from pipeline.store import FeatureStore, import_arrays
from pipeline.store.featureset import empty_rejects
from pipeline.store.rows import part_table
from pipeline.store.schema import PROVENANCE_KEY


def _provenance(dim=4, config_id="a" * 64, dataset="ds"):
    return {"format": 2, "dataset": dataset, "extractor": "test-hash", "extractor_version": "1", "config": {"dim": dim},
            "config_id": config_id, "weights_sha256": None, "dim": dim, "versions": {"mmfeat": "0"},
            "created": "2026-01-01T00:00:00+00:00", "frame_dim": None}


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, st.none() | text, st.sampled_from([None, "train", "val", "test"]), text,
                               st.lists(st.floats(width=32, allow_nan=False), min_size=4, max_size=4)),
                     min_size=1, max_size=20, unique_by=lambda r: r[0]))
def test_round_trip_every_column_and_metadata(tmp_path_factory, rows):
    store = FeatureStore(str(tmp_path_factory.mktemp("rt")))
    rows = sorted(rows, key=lambda r: r[0])  # readers return the current view in id order
    ids, labels, splits, sources, vecs = zip(*rows)
    matrix = np.array(vecs, dtype=np.float32)
    fs = import_arrays(store, _provenance(), list(ids), matrix, list(labels), list(splits))
    table = fs.table()
    assert table["id"].to_pylist() == list(ids)
    assert table["label"].to_pylist() == list(labels)
    # a split the rows give is kept; the others get the one the store assigns once (pipeline/splits.py)
    assert all(got == given if given is not None else got in ("train", "val", "test")
               for got, given in zip(table["split"].to_pylist(), splits))
    assert table["source"].to_pylist() == list(ids)
    np.testing.assert_array_equal(fs.numpy()[1], matrix)
    assert table.schema.field("features").type == pa.list_(pa.float32(), 4)
    meta = pq.read_schema(fs.files()[0]).metadata[PROVENANCE_KEY]
    import json

    assert json.loads(meta) == fs.manifest == store.open("ds", "test-hash").manifest


def test_a_truncated_part_is_skipped_named_and_re_extracted(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 20)
    summary = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    fs = FeatureStore(store).resolve(summary["feature_set"])
    victim = fs.files()[0]
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) - 10)
    fs = FeatureStore(store).resolve(summary["feature_set"])
    assert fs.table().num_rows == 10  # the healthy shard still reads
    assert len(fs.problems) == 1 and os.path.basename(victim) in fs.problems[0][1]
    again = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    assert again["processed"] == 10 and again["rows"] == 20 and not again["skipped_shards"]


def test_a_part_of_another_config_is_never_mixed_in(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 10)
    a = FeatureStore(store).resolve(extract(manifest, "text", "test-hash", store=store)["feature_set"])
    b = FeatureStore(store).resolve(extract(manifest, "text", "test-hash", {"salt": "x"}, store=store)["feature_set"])
    os.replace(b.files()[0], a.files()[0])  # a file of another feature set under a's done shard name
    a = FeatureStore(store).resolve(a.name)
    assert a.table().num_rows == 0
    assert len(a.problems) == 1  # named (its size, or its footer's config_id, gives it away)


def test_two_writers_of_one_shard_yield_one_file(store):
    fs = FeatureStore(store).create(_provenance())
    t = part_table(pa.array(["a", "b"]), pa.array(["c1", "c2"]), np.ones((2, 4), np.float32))
    fs.write_shard("1" * 16, t, empty_rejects(), 2)
    fs.write_shard("1" * 16, t, empty_rejects(), 2)
    names = sorted(os.listdir(fs.path))
    assert names == ["_done", "_manifest.json", f"part-{'1' * 16}.parquet", f"rejects-{'1' * 16}.parquet"]
    assert fs.keys().num_rows == 2


def test_shard_counts_must_add_up(store):
    fs = FeatureStore(store).create(_provenance())
    t = part_table(pa.array(["a"]), pa.array(["c"]), np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match="2 inputs"):
        fs.write_shard("2" * 16, t, empty_rejects(), 2)


def test_several_configs_need_a_prefix(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 6)
    s1 = extract(manifest, "text", "test-hash", store=store, dataset="d")
    extract(manifest, "text", "test-hash", {"salt": "y"}, store=store, dataset="d")
    st_ = FeatureStore(store)
    with pytest.raises(StoreError, match="several configs"):
        st_.resolve("d/test-hash")
    assert st_.resolve(s1["feature_set"]).config_id.startswith(s1["feature_set"].rsplit("-", 1)[1])


def test_duckdb_views_and_raw_file_recipes(store, tmp_path):
    import duckdb
    import polars as pl

    s = extract(write_text_manifest(str(tmp_path / "m.jsonl"), 12, empty_every=5), "text", "test-hash", store=store, dataset="news")
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM news__test_hash").fetchone()[0] == s["rows"] == 9
    assert con.execute("SELECT count(*) FROM news__test_hash_rejects").fetchone()[0] == 3
    glob = os.path.join(s["path"], "part-*.parquet")
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0] == 9
    frame = pl.read_parquet(glob)
    assert frame.height == 9 and frame["features"].to_numpy().shape == (9, 8)
