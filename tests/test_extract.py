import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import HashTextExtractor, write_text_manifest
from pipeline.errors import MmfeatError, UnknownName
from pipeline.extract import JobSpec, extract, plan
from pipeline.registry import create_extractor, list_extractors
from pipeline.store import FeatureStore

CHILD = """
import sys; sys.path.insert(0, {tests!r})
import helpers
from pipeline.extract import extract
extract({manifest!r}, "text", "test-hash", {{"pause_file": {pause!r}}}, store={store!r}, dataset="k", shard_size=10)
"""


def test_rows_and_rejects_add_up(store, tmp_path):
    s = extract(write_text_manifest(str(tmp_path / "m.jsonl"), 50, empty_every=7), "text", "test-hash", store=store,
                shard_size=16)
    fs = FeatureStore(store).resolve(s["feature_set"])
    assert s["rows"] + s["rejected"] == 50 and s["rejected"] == 8
    assert set(fs.rejects()["reason"].to_pylist()) == {"empty_text"}
    for marker in fs.done_markers().values():
        assert marker["n_in"] == marker["rows"] + marker["rejected"]


def test_sigkill_mid_shard_leaves_nothing_visible_and_rerun_is_identical(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 30)
    pause = str(tmp_path / "paused")
    code = CHILD.format(tests=os.path.dirname(__file__), manifest=manifest, pause=pause, store=store)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not os.path.exists(pause):
        assert proc.poll() is None and time.time() < deadline, "child ended before pausing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    st = FeatureStore(store)
    killed = st.feature_sets()[0]
    assert killed.table().num_rows == 0 and killed.done_markers() == {}
    s = extract(manifest, "text", "test-hash", store=store, dataset="k", shard_size=10)
    assert s["feature_set"] == killed.name  # the pause hook is a runtime field: same feature set
    again = extract(manifest, "text", "test-hash", store=store, dataset="k", shard_size=10)
    assert again["processed"] == 0 and s["rows"] == 30
    fresh = extract(manifest, "text", "test-hash", store=str(tmp_path / "s2"), dataset="k", shard_size=10)
    a = FeatureStore(store).resolve(s["feature_set"]).table().sort_by("id")
    b = FeatureStore(str(tmp_path / "s2")).resolve(fresh["feature_set"]).table().sort_by("id")
    assert a.equals(b) and len(set(a["id"].to_pylist())) == 30


def test_resume_after_crash_between_shards(store, tmp_path, monkeypatch):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 40)
    import pipeline.extract as ex

    real, calls = ex.run_shard, []

    def flaky(job, shard):
        calls.append(shard.shard_id)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(job, shard)

    monkeypatch.setattr(ex, "run_shard", flaky)
    with pytest.raises(RuntimeError):
        extract(manifest, "text", "test-hash", store=store, shard_size=10)
    monkeypatch.setattr(ex, "run_shard", real)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    assert s["processed"] == 20 and s["rows"] == 40


def test_incremental_extraction_processes_only_new_ids(store, tmp_path):
    path = str(tmp_path / "m.jsonl")
    write_text_manifest(path, 100)
    first = extract(path, "text", "test-hash", store=store, dataset="inc")
    with open(path, "a") as f:
        f.write(open(write_text_manifest(str(tmp_path / "new.jsonl"), 100, start=100)).read())
    HashTextExtractor.calls.clear()
    second = extract(path, "text", "test-hash", store=store, dataset="inc")
    assert first["processed"] == 100 and second["processed"] == 100 and second["rows"] == 200
    assert sum(HashTextExtractor.calls) == 100


def test_shard_ids_are_deterministic(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 25)
    spec = JobSpec(manifest, "text", "test-hash", (), "det", store)
    a = [s.shard_id for s in plan(spec, 10).shards]
    b = [s.shard_id for s in plan(spec, 10).shards]
    assert a == b and len(a) == 3 and len(set(a)) == 3


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownName, match="registered: .*bert.*cnn.*spectral.*word2vec"):
        create_extractor("nope")
    with pytest.raises(UnknownName, match="valid keys: dim, kill_once_file, pause_file, salt"):
        create_extractor("test-hash", {"bogus": "1"})
    with pytest.raises(MmfeatError, match="dim must be >= 1"):
        create_extractor("test-hash", {"dim": "0"})
    assert {"cnn", "bert", "word2vec", "spectral"} <= set(list_extractors())


def test_every_registered_extractor_meets_the_contract(tmp_path):
    """Shape, dtype, dim and determinism for each built-in extractor on tiny real inputs."""
    from conftest import SAMPLE

    inputs = {"image": [os.path.join(SAMPLE, "images", "circles", f) for f in sorted(os.listdir(os.path.join(SAMPLE, "images", "circles")))[:3]],
              "audio": [os.path.join(SAMPLE, "audio", f) for f in ("tone_00.wav", "noise_01.flac")],
              "text": ["a first short text about cooking", "another text about the sports team"]}
    from pipeline.registry import ItemBatch, extractor_class

    for name in ("cnn", "bert", "spectral"):
        cls = extractor_class(name)
        ext = create_extractor(name)
        sources = inputs[cls.modality]
        batch = ItemBatch([str(i) for i in range(len(sources))], sources, "text" if cls.modality == "text" else "path")
        r1, r2 = ext.extract(batch), ext.extract(batch)
        assert r1.features.dtype == np.float32 and r1.features.shape == (len(sources), ext.dim)
        assert np.isfinite(r1.features).all()
        np.testing.assert_array_equal(r1.features, r2.features)
        assert len(ext.config_id) == 64


def test_other_manifest_columns_are_kept_as_strings_in_meta(store, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,label,speaker,score\na,hello there,x,007,1.5\nb,general kenobi,y,,2\n")
    s = extract(str(manifest), "text", "test-hash", store=store)
    table = FeatureStore(store).resolve(s["feature_set"]).table(columns=["id", "meta"])
    assert table["meta"].to_pylist() == [[("speaker", "007"), ("score", "1.5")], [("score", "2")]]
    con = FeatureStore(store).duckdb()
    assert con.sql("SELECT meta['speaker'] FROM m__test_hash ORDER BY id").fetchall()[0][0] in ("007", ["007"])
