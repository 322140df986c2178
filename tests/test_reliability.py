"""Hostile inputs, killed and concurrent writers, damaged stores and tampered heads (issue #12): the fast
subset of what benchmarks/stress.py runs at length."""
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from conftest import ROOT, SAMPLE
from helpers import write_text_manifest
from pipeline.errors import MmfeatError, StoreError
from pipeline.extract import extract
from pipeline.store import FeatureStore


def _wav_with_rate(path, rate_field: int):
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 8000, subtype="PCM_16")
    data = bytearray(open(path, "rb").read())
    data[24:28] = struct.pack("<I", rate_field)  # the fmt chunk's sample rate
    open(path, "wb").write(bytes(data))


def test_hostile_audio_headers_and_amplitudes_are_rejects_not_crashes(store, tmp_path):
    shutil.copy(os.path.join(SAMPLE, "audio", "tone_00.wav"), tmp_path / "good.wav")
    for name, rate in (("giga", 10 ** 9), ("zero", 0), ("flipped", 8000 | (1 << 27)), ("one_hz", 1)):
        _wav_with_rate(tmp_path / f"{name}.wav", rate)
    for name, amp in (("huge", 1e20), ("max", 3e38)):
        y = np.sign(np.random.default_rng(1).normal(size=22050)).astype(np.float32) * np.float32(amp)
        sf.write(tmp_path / f"{name}.wav", y, 22050, subtype="FLOAT")
    names = ["good", "giga", "zero", "flipped", "one_hz", "huge", "max"]
    (tmp_path / "m.csv").write_text("id,path\n" + "".join(f"{n},{n}.wav\n" for n in names))
    s = extract(str(tmp_path / "m.csv"), "audio", store=store, max_reject_fraction=1)
    fs = FeatureStore(store).resolve(s["feature_set"])
    reasons = dict(zip(fs.rejects()["id"].to_pylist(), fs.rejects()["reason"].to_pylist()))
    assert {reasons[n] for n in ("giga", "zero", "flipped", "one_hz")} == {"bad_header"}
    assert "good" in fs.ids().to_pylist()
    assert np.isfinite(fs.numpy()[1]).all()  # huge amplitudes: rejected or finite, never NaN rows
    assert set(reasons.get(n, "ok") for n in ("huge", "max")) <= {"ok", "non_finite_features", "non_finite"}


def test_images_over_the_pixel_budget_are_rejects(store, tmp_path):
    Image.new("RGB", (60000, 1), (200, 10, 10)).save(tmp_path / "wide.png")
    Image.new("L", (1, 60000), 128).save(tmp_path / "tall.jpg")
    shutil.copy(os.path.join(SAMPLE, "images", "circles", "circles_01.png"), tmp_path / "ok.png")
    (tmp_path / "m.csv").write_text("id,path\nwide,wide.png\ntall,tall.jpg\nok,ok.png\n")
    s = extract(str(tmp_path / "m.csv"), "image", store=store, max_reject_fraction=1)
    fs = FeatureStore(store).resolve(s["feature_set"])
    assert sorted(fs.rejects()["reason"].to_pylist()) == ["image_too_large", "image_too_large"]
    assert "aspect ratio" in fs.rejects()["message"][0].as_py()


def test_special_files_and_unusable_paths_never_hang(store, tmp_path):
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "ok.txt").write_text("a fine text")
    long_name = "x" * 300 + ".txt"
    rows = [("fifo", "fifo.txt"), ("dir", "dir.txt"), ("ok", "ok.txt"), ("nul", "a\x00b.txt"), ("long", long_name)]
    with open(tmp_path / "m.jsonl", "w") as f:
        for i, p in rows:
            f.write(json.dumps({"id": i, "path": p}) + "\n")
    start = time.time()
    s = extract(str(tmp_path / "m.jsonl"), "text", "word2vec", {"min_count": "1"}, store=store, max_reject_fraction=1)
    assert time.time() - start < 60
    reasons = dict(zip(*[FeatureStore(store).resolve(s["feature_set"]).rejects()[c].to_pylist() for c in ("id", "reason")]))
    assert reasons == {"fifo": "not_a_file", "dir": "not_a_file", "nul": "unusable_path", "long": "unusable_path"}


def test_manifests_that_are_odd_but_valid_or_malformed_with_one_line(store, tmp_path):
    from pipeline.inputs.manifests import read_manifest

    big = tmp_path / "big.csv"  # > 1 MB with newlines inside quoted fields
    big.write_text("id,text\n" + "".join(f'r{i},"line one\nline two {i} {"w " * 40}"\n' for i in range(12000)))
    assert read_manifest(str(big)).num_rows == 12000
    utf16 = tmp_path / "u16.csv"
    utf16.write_text("id,text,label\na,héllo,x\nb,wörld,y\n", encoding="utf-16")
    assert read_manifest(str(utf16))["text"].to_pylist() == ["héllo", "wörld"]
    numbers = tmp_path / "n.jsonl"
    numbers.write_text('{"id": 1, "text": 42, "label": true}\n{"id": 2, "text": "x", "score": [1, 2]}\n')
    t = read_manifest(str(numbers))
    assert t["id"].to_pylist() == ["1", "2"] and t["text"].to_pylist() == ["42", "x"] and t["score"][1].as_py() == "[1, 2]"
    cell = tmp_path / "cell.jsonl"  # one 5 MB cell: a too_long reject, not a parse error
    cell.write_text(json.dumps({"id": "big", "text": "word " * 1_000_000}) + "\n" +
                    json.dumps({"id": "ok", "text": "fine words"}) + "\n")
    s = extract(str(cell), "text", "word2vec", {"min_count": "1"}, store=store, max_reject_fraction=1)
    assert FeatureStore(store).resolve(s["feature_set"]).rejects()["reason"].to_pylist() == ["too_long"]
    cases = {"dup.csv": (b"id,text,text\na,b,c\n", "duplicate column"),
             "head.csv": (b"id,text\n", "no rows"),
             "bad.jsonl": (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "\xff\xfe"}\n', "2: invalid UTF-8"),
             "list.jsonl": (b'{"id": "a", "text": ["x", "y"]}\n', "'text' must be a string"),
             "junk.jsonl": (b'{"id": "a"\n', "not a JSON object")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "extract", str(tmp_path / name), "--modality", "text",
                            "--store", store], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)


def test_a_killed_writer_leaves_no_debris_that_readers_or_the_next_run_count(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 30)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    fs = FeatureStore(store).resolve(s["feature_set"])
    part = fs.files()[0]
    shutil.copy(part, os.path.join(fs.path, "part-" + "f" * 16 + ".parquet"))  # renamed, marker never written
    open(os.path.join(fs.path, ".staging-dead.parquet"), "wb").write(b"half")
    assert fs.table().num_rows == 30  # readers trust markers only
    again = extract(manifest, "text", "test-hash", store=store, shard_size=7)  # other shard boundaries
    assert again["processed"] == 0
    assert sorted(n for n in os.listdir(fs.path) if n.startswith(("part-", ".staging"))) == \
        sorted(os.path.basename(p) for p in fs.files())


def test_concurrent_writers_converge_to_each_id_once(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 40)
    pause = str(tmp_path / "paused")
    code = ("import sys; sys.path.insert(0, 'tests'); import helpers; from pipeline.extract import extract; "
            f"extract({manifest!r}, 'text', 'test-hash', {{'pause_file': {pause!r}}}, dataset='m', store={store!r}, shard_size=10)")
    first = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        for _ in range(600):
            if os.path.exists(pause):
                break
            time.sleep(0.1)
        with pytest.raises(StoreError, match="an extract is writing"):
            extract(manifest, "text", "test-hash", dataset="m", store=store, shard_size=16)
    finally:
        first.kill()
        first.wait()
    s = extract(manifest, "text", "test-hash", dataset="m", store=store, shard_size=16)  # the dead holder's lease is taken over
    fs = FeatureStore(store).resolve(s["feature_set"])
    ids = fs.keys()["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 40 and fs.table().num_rows == 40


def test_readers_see_each_id_once_when_a_part_is_duplicated(store, tmp_path):
    s = extract(write_text_manifest(str(tmp_path / "m.jsonl"), 10), "text", "test-hash", store=store)
    fs = FeatureStore(store).resolve(s["feature_set"])
    shard = next(iter(fs.done_markers()))
    copy = "e" * 16
    for kind in ("part", "rejects"):
        shutil.copy(fs.shard_path(shard, kind), fs.shard_path(copy, kind))
    shutil.copy(os.path.join(fs.path, "_done", f"{shard}.json"), os.path.join(fs.path, "_done", f"{copy}.json"))
    with pytest.warns(UserWarning, match="10 duplicate"):
        assert fs.table().num_rows == 10
    con = FeatureStore(store).duckdb()
    assert con.execute("SELECT count(*) FROM m__test_hash").fetchone()[0] == 10


def test_a_damaged_store_heals_or_says_why(store, tmp_path):
    from pipeline.cli import run
    from pipeline.store.fsck import fsck

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 30)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    other = extract(manifest, "text", "test-hash", {"salt": "z"}, store=store, dataset="other")
    fs = FeatureStore(store).resolve(s["feature_set"])
    shards = sorted(fs.done_markers())
    open(os.path.join(fs.path, "_done", f"{shards[0]}.json"), "w").close()  # a power cut's empty marker
    os.remove(fs.shard_path(shards[1]))  # a marker naming a missing part
    victim = FeatureStore(store).resolve(other["feature_set"])
    with open(os.path.join(victim.path, "_manifest.json"), "w", encoding="utf-16") as f:
        f.write("{}")
    assert fs.table().num_rows == 10 and len(fs.problems) == 2
    assert run(["ls", "--store", store]) == 0  # one broken set does not disable the store
    assert run(["query", "SELECT count(*) FROM m__test_hash", "--store", store]) == 0
    findings = fsck(FeatureStore(store))
    assert {f["problem"].split(" ")[0] for f in findings} >= {"damaged", "marker"} and len(findings) >= 3
    fsck(FeatureStore(store), repair=True)
    # the lone broken manifest was rewritten from its parts' footers: nothing healthy was deleted
    assert FeatureStore(store).resolve(other["feature_set"]).table().num_rows == 30
    again = extract(manifest, "text", "test-hash", store=store, shard_size=10)
    assert again["processed"] == 20 and again["rows"] == 30
    with pytest.raises(StoreError, match="no store at"):
        FeatureStore(str(tmp_path / "typo")).require()


def test_query_refuses_foreign_parts_and_empty_sets(store, tmp_path, capsys):
    from pipeline.cli import run

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 10)
    a = FeatureStore(store).resolve(extract(manifest, "text", "test-hash", store=store)["feature_set"])
    b = FeatureStore(store).resolve(extract(manifest, "text", "test-hash", {"dim": "4"}, store=store)["feature_set"])
    shutil.copy(b.files()[0], a.files()[0])  # another config and dimension under a's committed name
    assert run(["query", f"SELECT count(*) FROM m__test_hash_{b.config_id[:12]}", "--store", store]) == 0
    assert f"of {a.name}" in capsys.readouterr().err  # the damaged shard is named
    a = FeatureStore(store).resolve(a.name)
    assert a.table().num_rows == 0 and len(a.problems) == 1  # never mixed in


def test_retrained_heads_are_new_runs_and_tampered_heads_are_one_line_errors(store, tmp_path):
    from pipeline.heads import predict, train_head

    s = extract(write_text_manifest(str(tmp_path / "m.jsonl"), 60), "text", "test-hash", store=store)
    out = str(tmp_path / "head")
    one = train_head([s["feature_set"]], None, store, out)
    two = train_head([s["feature_set"]], {"l2_penalties": "0.1"}, store, out)
    assert one["path"] != two["path"] and os.path.realpath(os.path.join(out, "latest")) == two["path"]
    assert os.path.exists(os.path.join(one["path"], "head.safetensors"))
    assert oct(os.stat(os.path.join(two["path"], "head.safetensors")).st_mode & 0o777) == \
        oct(os.stat(os.path.join(two["path"], "head.json")).st_mode & 0o777)
    card = json.load(open(os.path.join(two["path"], "head.json")))
    tampered = {"std0": lambda c: c["standardization"].update(std=[0.0] * c["dim"]),
                "nan": lambda c: c["standardization"].update(mean=[float("nan")] * c["dim"]),
                "huge": lambda c: (c.update(head="mlp", kind="mlp"), c["config"].update(hidden=[20_000_000])),
                "kind": lambda c: c.update(kind="mlp"),
                "classes": lambda c: c.update(classes=["only"]),
                "dim": lambda c: c.update(dim=3)}
    for name, edit in tampered.items():
        bad = tmp_path / name
        shutil.copytree(two["path"], bad)
        c = json.loads(json.dumps(card))
        edit(c)
        (bad / "head.json").write_text(json.dumps(c))
        with pytest.raises(MmfeatError):
            predict(str(bad), s["feature_set"], store)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "head.json").write_bytes(b"[" * 100000)
    with pytest.raises(MmfeatError, match="unreadable head card"):
        predict(str(tmp_path / "garbage"), s["feature_set"], store)


def test_unloadable_weights_and_vectors_are_one_line_errors(tmp_path):
    import pickle

    from pipeline.registry import create_extractor

    (tmp_path / "w.pth").write_bytes(pickle.dumps({"x": object()}))
    with pytest.raises(MmfeatError, match="not a loadable state_dict"):
        create_extractor("cnn", {"weights": str(tmp_path / "w.pth")})
    (tmp_path / "v.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(MmfeatError, match="not a word2vec"):
        create_extractor("word2vec", {"vectors": str(tmp_path / "v.txt.gz")})


def test_non_finite_feature_rows_are_rejects_never_stored(store, tmp_path):
    from helpers import HashTextExtractor
    from pipeline.registry import register_extractor

    @register_extractor
    class NanText(HashTextExtractor):
        name = "test-nan"

        def extract(self, batch):
            r = super().extract(batch)
            bad = np.array(["poison" in batch.sources[i] for i in r.ok])
            r.features[bad] = np.nan
            return r

    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"id": f"x{i}", "text": t}) + "\n"
                                              for i, t in enumerate(["fine", "poison pill", "also fine"])))
    s = extract(str(tmp_path / "m.jsonl"), "text", "test-nan", store=store)
    fs = FeatureStore(store).resolve(s["feature_set"])
    assert fs.ids().to_pylist() == ["x0", "x2"] and np.isfinite(fs.numpy()[1]).all()
    assert fs.rejects().to_pylist()[0]["reason"] == "non_finite_features"
