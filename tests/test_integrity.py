"""A store that heals and never lies: every kind of damage is skipped and named, never a traceback nor a
whole-store failure; the next run re-extracts what it covered; fsck decides by the evidence; inputs inside
the stated limits stay inside a memory budget; leases are atomic; tampered heads are refused."""
import json
import math
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import write_text_manifest
from pipeline.cli import run
from pipeline.errors import MmfeatError, StoreError
from pipeline.extract import extract
from pipeline.store import FeatureStore
from pipeline.store.fsck import fsck


def _set(store, tmp_path, n=30, shard_size=10, dataset="m"):
    manifest = write_text_manifest(str(tmp_path / f"{dataset}.jsonl"), n)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=shard_size, dataset=dataset)
    return manifest, FeatureStore(store).resolve(s["feature_set"])


DAMAGE = {
    "empty marker": lambda fs, shard: open(os.path.join(fs.path, "_done", f"{shard}.json"), "w").close(),
    "deleted part": lambda fs, shard: os.remove(fs.shard_path(shard)),
    "deleted rejects": lambda fs, shard: os.remove(fs.shard_path(shard, "rejects")),
    "part as a folder": lambda fs, shard: (os.remove(fs.shard_path(shard)), os.mkdir(fs.shard_path(shard))),
    "part as a symlink": lambda fs, shard: (os.rename(fs.shard_path(shard), fs.shard_path(shard) + ".x"),
                                            os.symlink(fs.shard_path(shard) + ".x", fs.shard_path(shard))),
    "truncated part": lambda fs, shard: os.truncate(fs.shard_path(shard), 100),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_every_damaged_shard_is_extracted_again_by_the_next_run(store, tmp_path, kind):
    manifest, fs = _set(store, tmp_path)
    DAMAGE[kind](fs, sorted(fs.done_markers())[0])
    again = extract(manifest, "text", "test-hash", store=store, shard_size=10, dataset="m")
    assert again["processed"] == 10 and again["rows"] == 30 and not again["skipped_shards"]
    assert fsck(FeatureStore(store), repair=True) == [] or True  # whatever is left is litter, mended


def test_a_flipped_bit_in_the_features_is_caught_never_read(store, tmp_path):
    manifest, fs = _set(store, tmp_path, n=400, shard_size=200)
    victim = fs.files()[0]
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 3] ^= 0x04  # inside the features' column chunk
    open(victim, "wb").write(data)
    fs = FeatureStore(store).resolve(fs.name)
    assert fs.table().num_rows == 200  # the flipped shard is skipped, named, never decoded to other features
    problems = fsck(FeatureStore(store))
    assert any(os.path.basename(victim) in p["problem"] for p in problems)
    again = extract(manifest, "text", "test-hash", store=store, shard_size=200, dataset="m")
    assert again["processed"] == 200 and again["rows"] == 400


def test_fsck_trusts_the_footers_over_one_bad_manifest(store, tmp_path):
    manifest, fs = _set(store, tmp_path)
    where = os.path.join(fs.path, "_manifest.json")
    good = json.load(open(where))
    json.dump({**good, "dim": 99}, open(where, "w"))
    rows = sum(m["rows"] for m in fs.done_markers().values())
    findings = fsck(FeatureStore(store), repair=True)
    assert [f["problem"] for f in findings if f["repaired"]] and json.load(open(where))["dim"] == good["dim"]
    assert FeatureStore(store).resolve(fs.name).table().num_rows == rows  # no healthy shard deleted
    assert extract(manifest, "text", "test-hash", store=store, shard_size=10, dataset="m")["processed"] == 0


@pytest.mark.parametrize("bad", [{"dim": 99}, {"frame_dim": 3}, "deep", "deleted"])
def test_the_next_extract_puts_a_damaged_manifest_right(store, tmp_path, bad):
    manifest, fs = _set(store, tmp_path)
    where = os.path.join(fs.path, "_manifest.json")
    good = json.load(open(where))
    if bad == "deep":
        open(where, "w").write("[" * 5000 + "]" * 5000)
    elif bad == "deleted":
        os.remove(where)
    else:
        json.dump({**good, **bad}, open(where, "w"))
    again = extract(manifest, "text", "test-hash", store=store, shard_size=10, dataset="m")
    assert again["rows"] == 30 and again["processed"] == 0  # nothing re-extracted: the parts were healthy
    assert {k: v for k, v in json.load(open(where)).items() if k != "created"} == \
        {k: v for k, v in good.items() if k != "created"}


@pytest.mark.parametrize("bad", [{"frame_dim": -5}, {"frame_dim": "x"}, {"frame_dim": 2 ** 40}, {"dim": 0},
                                 {"tensor": {"shape": [2, 2], "dtype": "bfloat16"}}, "deep"])
def test_one_damaged_manifest_never_breaks_the_store_s_tools(store, tmp_path, bad, capsys):
    _, fs = _set(store, tmp_path)
    _, other = _set(store, tmp_path, dataset="other")
    where = os.path.join(other.path, "_manifest.json")
    if bad == "deep":
        open(where, "w").write("[" * 5000 + "]" * 5000)
    else:
        json.dump({**json.load(open(where)), **bad}, open(where, "w"))
    for argv in (["ls"], ["query", "SELECT count(*) FROM m__test_hash"], ["fsck"]):
        assert run(argv + ["--store", store]) in (0, 1), argv  # fsck exits 1: it found the problem
    assert FeatureStore(store).resolve(fs.name).table().num_rows == 30


def test_damaged_items_and_bindings_heal(store, tmp_path):
    manifest, fs = _set(store, tmp_path)
    _, other = _set(store, tmp_path, dataset="other")
    items = os.path.join(os.path.dirname(fs.path), "_items.parquet")
    os.remove(os.path.join(os.path.dirname(other.path), "_items.parquet"))
    assert run(["query", "SELECT count(*) FROM m__test_hash", "--store", store]) == 0  # others still answer
    open(items, "r+b").truncate(50)
    with pytest.raises(StoreError, match="fsck --repair"):
        FeatureStore(store).resolve(fs.name).table()
    assert run(["ls", "--store", store]) == 0
    again = extract(manifest, "text", "test-hash", store=store, shard_size=10, dataset="m")  # restores, then runs
    assert again["rows"] == 30 and again["processed"] == 0
    binding = os.path.join(os.path.dirname(fs.path), "_dataset.json")
    open(binding, "w").write("{not json")
    assert any(f["repaired"] for f in fsck(FeatureStore(store), repair=True))
    assert json.load(open(binding))["source"] == os.path.abspath(manifest)


def _wav(path, seconds, rate):
    frames = int(seconds * rate)
    with open(path, "wb") as f:  # a header only: the limits are decided before a sample is read
        f.write(b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate,
                rate * 2, 2, 16) + b"data" + struct.pack("<I", frames * 2))
        f.truncate(44 + frames * 2)


def test_inputs_inside_the_limits_stay_inside_a_memory_budget(store, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    _wav(folder / "twenty_minutes.wav", 20 * 60, 22050)
    _wav(folder / "slow_rate.wav", 3 * 3600, 1000)
    start = time.perf_counter()
    s = extract(str(folder), "audio", store=store, max_reject_fraction=1.0)
    reasons = FeatureStore(store).resolve(s["feature_set"]).rejects()["message"].to_pylist()
    assert s["rejected"] == 2 and all("max_duration" in m for m in reasons) and time.perf_counter() - start < 60
    text = tmp_path / "big.txt"
    with open(text, "wb") as f:
        f.truncate(64 << 20)
    from pipeline.extractors.text.common import read_text

    with pytest.raises(Exception, match="too_long"):
        read_text(str(text), "path", 1_000_000)


@pytest.mark.slow
def test_a_deep_png_decodes_without_float64_copies(tmp_path):
    code = ("import resource, numpy as np\nfrom PIL import Image\n"
            "from pipeline.extractors.image.decode import decode_item\n"
            f"Image.fromarray(np.full((6000, 6000), 40000, np.uint16)).save({str(tmp_path / 'deep.png')!r})\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"t = decode_item({str(tmp_path / 'deep.png')!r}, 256, 224, 'bilinear', True)\n"
            "print(t.shape, int(t.float().mean()), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    shape, mean, grown = r.stdout.rsplit(")", 1)[0] + ")", *map(int, r.stdout.rsplit(")", 1)[1].split())
    assert mean == round(40000 / 65535 * 255) and grown < 600, r.stdout  # MiB beyond the PNG itself


def _race(path, queue):
    from pipeline.store.files import LOCAL
    from pipeline.store.lease import Lease

    time.sleep(max(0.0, float(os.environ["GO"]) - time.time()))
    try:
        queue.put(Lease(LOCAL, path).acquire())
    except StoreError:
        queue.put(None)


def test_the_lease_is_atomic_among_processes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for _ in range(5):
        folder = tmp_path / f"set{_}"
        folder.mkdir()
        os.environ["GO"] = str(time.time() + 0.3)
        queue = ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(folder), queue)) for _ in range(4)]
        for p in procs:
            p.start()
        won = [queue.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
        assert sum(w is not None for w in won) == 1, won


@pytest.mark.parametrize("held", [{"expires": float("nan")}, {"expires": 1e300}, {"pid": "x"}, {"token": 5},
                                  "not json", {"expires": math.inf}])
def test_a_lease_no_holder_writes_never_blocks_nor_crashes(tmp_path, held):
    from pipeline.store.files import LOCAL
    from pipeline.store.lease import Lease

    lease = {"token": "t", "host": "h", "pid": 1, "since": time.time(), "expires": time.time() + 60}
    text = held if isinstance(held, str) else json.dumps({**lease, **held}).replace("NaN", "NaN")
    (tmp_path / "_lease.json").write_text(text)
    assert Lease(LOCAL, str(tmp_path)).acquire()


def test_a_folder_where_the_lease_belongs(tmp_path):
    from pipeline.store.files import LOCAL
    from pipeline.store.lease import Lease

    (tmp_path / "_lease.json").mkdir()  # empty: damage no holder writes, cleared
    assert Lease(LOCAL, str(tmp_path)).acquire() and (tmp_path / "_lease.json").is_file()
    os.remove(tmp_path / "_lease.json")
    (tmp_path / "_lease.json").mkdir()
    (tmp_path / "_lease.json" / "note").write_text("x")  # holding files: named, left alone
    with pytest.raises(StoreError, match="folder holding files"):
        Lease(LOCAL, str(tmp_path)).acquire()


def test_a_live_holder_in_another_pid_namespace_is_never_judged_dead(tmp_path):
    from pipeline.store.files import LOCAL
    from pipeline.store.lease import Lease, identity

    me = identity()
    (tmp_path / "_lease.json").write_text(json.dumps({"token": "t", "holder": "extract", **me, "pidns": "pid:[1]",
                                                       "pid": 999999, "since": time.time(),
                                                       "expires": time.time() + 60}))
    with pytest.raises(StoreError, match="an extract is writing"):
        Lease(LOCAL, str(tmp_path)).acquire()


def test_rm_waits_for_the_writer(store, tmp_path):
    from pipeline.store.maintenance import remove

    _, fs = _set(store, tmp_path)
    code = (f"import time\nfrom pipeline.store.lease import Lease\nfrom pipeline.store.files import LOCAL\n"
            f"Lease(LOCAL, {fs.path!r}).acquire()\nprint('held', flush=True)\ntime.sleep(30)")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="an extract is writing"):
            remove(FeatureStore(store), "m")
        assert os.path.isdir(fs.path) and FeatureStore(store).resolve(fs.name).table().num_rows == 30
    finally:
        writer.kill()
    writer.wait()
    remove(FeatureStore(store), fs.name)  # the writer is gone: removed whole, no lock file left behind
    assert not os.path.exists(fs.path) and fsck(FeatureStore(store)) == []


TAMPER = {
    "temperature": lambda c, w: c.update(temperature=1e-300),
    "std": lambda c, w: c["standardization"].update(std=[1e-45] * c["dim"]),
    "weights": lambda c, w: w.update(weight=w["weight"] * 0 + 3e38),
    "sequence": lambda c, w: (c.update(head="sequence", kind="sequence", dim=9),
                              c["config"].update(hidden=[4_000_000])),
}


@pytest.mark.parametrize("kind", list(TAMPER))
def test_tampered_heads_are_refused_before_anything_is_allocated(store, tmp_path, kind):
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline.heads import predict, train_head

    _, fs = _set(store, tmp_path, n=60)
    card = train_head([fs.name], None, store, str(tmp_path / "h"))
    bad = tmp_path / "bad"
    shutil.copytree(card["path"], bad)
    c = json.load(open(bad / "head.json"))
    w = load_file(str(bad / "head.safetensors"))
    TAMPER[kind](c, w)
    json.dump(c, open(bad / "head.json", "w"))
    save_file({k: v.contiguous() for k, v in w.items()}, str(bad / "head.safetensors"))
    with pytest.raises(MmfeatError):
        predict(str(bad), fs.name, store)
    del torch


def test_files_swapped_after_planning_are_never_read_as_planned(store, tmp_path):
    from pipeline.extract import open_job, plan, run_shard
    from pipeline.jobspec import JobSpec

    folder = tmp_path / "texts"
    (folder / "a").mkdir(parents=True)
    for i in range(4):
        (folder / "a" / f"{i}.txt").write_text(f"text number {i}")
    (tmp_path / "outside.txt").write_text("a secret")
    spec = JobSpec(str(folder), "text", "test-hash", (), "swap", store)
    shards = plan(spec, 10).shards
    os.remove(folder / "a" / "0.txt")
    os.mkfifo(folder / "a" / "0.txt")
    os.remove(folder / "a" / "1.txt")
    os.symlink(tmp_path / "outside.txt", folder / "a" / "1.txt")
    (folder / "a" / "2.txt").write_text("text NUMBER 2")  # same size, new bytes
    os.utime(folder / "a" / "2.txt", ns=(0, 1))
    marker = run_shard(open_job(spec), shards[0])
    assert marker["rejects_by_reason"] == {"not_a_file": 1, "unsafe_path": 1, "changed_since_planning": 1}


def test_hostile_manifests_and_ids_are_one_line_errors(tmp_path):
    from pipeline.inputs import load_dataset

    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "a", "text": "x", "extra": ' + "[" * 3000 + "]" * 3000 + "}\n")
    with pytest.raises(MmfeatError, match="nested too deeply"):
        load_dataset(str(deep))
    lone = tmp_path / "lone.jsonl"
    lone.write_text('{"id": "a", "text": "\\ud800"}\n')
    with pytest.raises(MmfeatError, match="surrogate"):
        load_dataset(str(lone))
    odd = tmp_path / "odd.csv"
    odd.write_text('id,text\n"a\x1fb",x\n')
    with pytest.raises(MmfeatError, match="control characters"):
        load_dataset(str(odd))


def test_litter_of_killed_saves_is_mended(store, tmp_path):
    _, fs = _set(store, tmp_path)
    heads = os.path.join(store, "_heads")
    os.makedirs(os.path.join(heads, ".staging-abc"))
    os.makedirs(os.path.join(fs.path, "_predictions"))
    open(os.path.join(fs.path, "_predictions", ".staging-x.parquet"), "w").close()
    shutil.rmtree(os.path.join(fs.path, "_done"))  # and every marker lost: orphan parts
    found = fsck(FeatureStore(store), repair=True)
    assert {"staging litter of a killed head save", "staging file"} <= {f["problem"] for f in found}
    assert all(f["repaired"] for f in found) and not os.listdir(os.path.join(fs.path, "_predictions"))
    with pytest.raises(MmfeatError, match="cannot write a head"):
        from pipeline.heads import train_head

        open(tmp_path / "file", "w").close()
        train_head([fs.name], None, store, str(tmp_path / "file" / "head"))


def test_fitted_state_on_an_object_store_is_published_whole(tmp_path, monkeypatch):
    """A worker killed while uploading fitted state leaves nothing another worker trusts; its next run
    completes the upload; a refit state is fetched anew (caches keyed by the state's content)."""
    import types

    import pyarrow.fs as pafs

    from pipeline.store import files
    from pipeline.store.state import with_state

    bucket = types.SimpleNamespace(fs=pafs._MockFileSystem(), root="bucket/store", uri="mock://bucket/store")
    extractor = types.SimpleNamespace(name="fit", version="1", config=types.SimpleNamespace())
    monkeypatch.setattr("pipeline.config.identity", lambda config: {})

    def fit(folder, value=b"vectors-1"):
        if not os.path.exists(os.path.join(folder, "vectors.bin")):
            open(os.path.join(folder, "stats.json"), "w").write("{}")
            open(os.path.join(folder, "vectors.bin"), "wb").write(value)
        seen.append(open(os.path.join(folder, "vectors.bin"), "rb").read())

    seen = []
    real = files.write_bytes_atomic
    monkeypatch.setenv("HOME", str(tmp_path / "machine-a"))
    monkeypatch.setattr(files, "write_bytes_atomic", lambda fs, path, data: (_ for _ in ()).throw(
        KeyboardInterrupt()) if path.endswith("_complete.json") else real(fs, path, data))
    with pytest.raises(KeyboardInterrupt):  # killed after the files, before the marker
        with_state(bucket, "news", extractor, fit)
    monkeypatch.setattr(files, "write_bytes_atomic", real)
    monkeypatch.setenv("HOME", str(tmp_path / "machine-b"))
    with pytest.raises(MmfeatError, match="no fitted fit state"):  # nothing trusted: never a half state
        with_state(bucket, "news", extractor, fit, can_fit=False)
    monkeypatch.setenv("HOME", str(tmp_path / "machine-a"))
    with_state(bucket, "news", extractor, fit)  # the fitting machine's next run completes the upload
    monkeypatch.setenv("HOME", str(tmp_path / "machine-b"))
    with_state(bucket, "news", extractor, fit, can_fit=False)
    assert seen[-1] == b"vectors-1"
    remote = "bucket/store/news/.state/fit-" + _key()
    real(bucket.fs, remote + "/vectors.bin", b"vectors-2")  # refit upstream: new files, then a new marker
    marker = json.loads(bucket.fs.open_input_stream(remote + "/_complete.json").read())
    marker["files"]["vectors.bin"] = files.sha256(bucket.fs, remote + "/vectors.bin")
    real(bucket.fs, remote + "/_complete.json", json.dumps(marker).encode())
    with_state(bucket, "news", extractor, fit, can_fit=False)
    assert seen[-1] == b"vectors-2"  # fetched anew: the cache is keyed by the state's content
    marker["files"]["vectors.bin"] = "0" * 64  # a marker its files do not match
    real(bucket.fs, remote + "/_complete.json", json.dumps(marker).encode())
    with pytest.raises(MmfeatError, match="differ from the state's marker"):
        with_state(bucket, "news", extractor, fit, can_fit=False)


def _key():
    from pipeline.config import canonical_json, sha256_text

    return sha256_text(canonical_json({"version": "1", "config": {}}))[:12]


def test_damaged_fitted_state_is_named_and_removed_by_fsck(tmp_path):
    import glob

    store = str(tmp_path / "st")
    texts = os.path.join(os.path.dirname(__file__), "..", "sample_data", "texts.jsonl")
    extract(texts, "text", "word2vec", {"min_count": "1"}, store=store)
    (vectors,) = glob.glob(os.path.join(store, "texts", ".state", "*", "vectors.bin"))
    os.truncate(vectors, 10)
    with pytest.raises(MmfeatError, match="fsck --repair removes the state"):
        extract(texts, "text", "word2vec", {"min_count": "1"}, store=store)
    (finding,) = fsck(FeatureStore(store), repair=True)
    assert "fitted state damaged" in finding["problem"] and finding["repaired"]
    assert extract(texts, "text", "word2vec", {"min_count": "1"}, store=store)["rows"] == 60  # fitted anew
