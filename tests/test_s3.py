"""The store on S3: an S3-compatible server (moto's server mode) on loopback, the whole cycle against
``s3://``: extract, a writer killed mid-run and resumed, query, fitted state shared by name, heads, predict."""
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from helpers import write_text_manifest

pytestmark = pytest.mark.slow
CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_uri():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(CREDS)
    try:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                               allow_bucket_creation=True)
        for _ in range(100):
            try:
                fs.create_dir("mmfeat")
                break
            except OSError:
                time.sleep(0.2)
        yield f"s3://mmfeat/store?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    finally:
        server.terminate()
        server.wait(10)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_the_whole_cycle_on_s3(s3_uri, tmp_path):
    from pipeline.cli import run
    from pipeline.extract import extract
    from pipeline.heads import predict, train_head
    from pipeline.store import FeatureStore

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 60, empty_every=10)
    pause = str(tmp_path / "paused")
    code = ("import sys; sys.path.insert(0, 'tests'); import helpers; from pipeline.extract import extract; "
            f"extract({manifest!r}, 'text', 'test-hash', {{'pause_file': {pause!r}}}, store={s3_uri!r}, shard_size=16)")
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **CREDS})
    for _ in range(600):
        if os.path.exists(pause):
            break
        time.sleep(0.1)
    writer.kill()  # mid-shard: nothing of that shard may be visible
    writer.wait()
    s = extract(manifest, "text", "test-hash", store=s3_uri, shard_size=16)
    fs = FeatureStore(s3_uri).resolve(s["feature_set"])
    keys = fs.keys()["id"].to_pylist()
    assert s["rows"] == 54 and s["rejected"] == 6 and len(keys) == len(set(keys)) == 54
    assert extract(manifest, "text", "test-hash", store=s3_uri, shard_size=16)["processed"] == 0
    assert run(["query", "SELECT count(*) FROM m__test_hash", "--store", s3_uri]) == 0
    con = FeatureStore(s3_uri).duckdb()
    assert con.execute("SELECT count(*) FROM m__test_hash").fetchone()[0] == 54
    assert con.execute("SELECT count(*) FROM m__test_hash_rejects").fetchone()[0] == 6
    card = train_head([s["feature_set"]], None, s3_uri, str(tmp_path / "s3head"))
    out = predict(card["path"], s["feature_set"], s3_uri)
    assert out["rows"] == 54 and out["path"].startswith("mmfeat/store/")
    # the run went to the store (files first, latest.json last): another machine predicts by the head's name
    assert card["store_path"].startswith("mmfeat/store/_heads/s3head/runs/")
    os.environ["MMFEAT_CACHE"] = str(tmp_path / "other-machine")
    try:
        again = predict("s3head", s["feature_set"], s3_uri)
        from pipeline.heads import list_heads

        listed = list_heads(s3_uri)
    finally:
        del os.environ["MMFEAT_CACHE"]
    assert again["rows"] == 54 and again["head"].startswith(str(tmp_path / "other-machine"))
    assert [h["name"] for h in listed] == ["s3head"] and listed[0]["accuracy"] == card["metrics"]["accuracy"]
    texts = os.path.join(ROOT, "sample_data", "texts.jsonl")
    w = extract(texts, "text", "word2vec", {"min_count": "1"}, store=s3_uri)
    again = extract(texts, "text", "word2vec", {"min_count": "1"}, store=s3_uri, dataset="tonight", fit_on="texts")
    assert w["feature_set"].split("-")[-1] == again["feature_set"].split("-")[-1]
