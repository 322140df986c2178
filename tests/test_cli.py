import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE


def mmfeat(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_extract_train_predict_ls_query_json(tmp_path):
    store = str(tmp_path / "st")
    r = mmfeat("extract", os.path.join(SAMPLE, "texts.jsonl"), "--modality", "text", "--extractor", "word2vec",
               "--set", "min_count=1", "--dataset", "news", "--store", store, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"feature_set", "path", "rows", "rejected", "items_per_s", "processed", "changes"}
    assert out["rows"] == 60 and out["rejected"] == 2
    r = mmfeat("train-head", "news/word2vec", "--store", store, "--out", str(tmp_path / "head"), "--json")
    assert r.returncode == 0, r.stderr
    head = json.loads(r.stdout)
    assert {"accuracy", "macro_f1"} <= set(head["metrics"])
    r = mmfeat("predict", head["head"], "news/word2vec", "--json", env={"MMFEAT_STORE": store})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 60
    r = mmfeat("ls", "--store", store, "--json")
    assert json.loads(r.stdout)[0]["rows"] == 60
    r = mmfeat("query", "SELECT count(*) AS n FROM news__word2vec", "--store", store)
    assert r.returncode == 0 and "60" in r.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    for args in (["extract", str(tmp_path / "missing.csv"), "--modality", "text"],
                 ["extract", os.path.join(SAMPLE, "texts.jsonl"), "--modality", "text", "--extractor", "nope"],
                 ["extract", os.path.join(SAMPLE, "texts.jsonl"), "--modality", "text", "--set", "pooling=median"],
                 ["train-head", "nope/bert", "--store", str(tmp_path)]):
        r = mmfeat(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("mmfeat: error:") and "Traceback" not in r.stderr


@pytest.mark.slow
def test_gpu_suite_runs_at_tiny_sizes():
    """`make bench-gpu`'s script, on tiny inputs: every benchmark it calls still runs and reports."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_suite.py"), "--tiny"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout[r.stdout.index("| target |"):]
    assert table.count("\n|") >= 6 and "—" not in table, table
