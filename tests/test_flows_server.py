"""The whole Prefect cycle against a real `prefect server`: pool, deploy, worker, run, chained train-head."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, body: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "MMFEAT_STORE": str(home / "store"), "PWD": ROOT}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([os.path.join(BIN, "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 120
    while True:
        try:
            _api(f"http://127.0.0.1:{port}/api/health")
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(0.5)
    yield env
    proc.terminate()
    proc.wait(30)


def _drifted_night_runs_the_audit(env, api, feature_set: str, head: str) -> None:
    """prefect.yaml's trigger: the mmfeat.drift event of a drifted night starts the audit deployment. The
    figures are measured; only the verdict is forced (the statistics are tests/test_insight.py's)."""
    code = ("import sys; from pipeline.insight import drift; from flows.know import publish_drift; "
            "f = drift(sys.argv[1], sys.argv[2], 'all'); f['drifted'] = True; publish_drift(f, None)")
    r = subprocess.run([sys.executable, "-c", code, feature_set, head], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    deadline, audits = time.time() + 300, []
    while time.time() < deadline:
        runs = _api(f"{api}/flow_runs/filter", {"flow_runs": {"name": {}}})
        audits = [r for r in runs if "feature_set" in r["parameters"]]
        if any(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in audits):
            break
        time.sleep(2)
    assert audits and audits[0]["state_type"] == "COMPLETED", [(r["name"], r["state_type"]) for r in audits]
    assert audits[0]["parameters"]["feature_set"] == feature_set
    from pipeline.store import FeatureStore

    fs = FeatureStore(env["MMFEAT_STORE"]).resolve(feature_set)
    assert os.path.exists(os.path.join(fs.path, "_audit", "latest.parquet"))


def _prefect(env, *args, timeout=300):
    r = subprocess.run([os.path.join(BIN, "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


def test_deploy_run_extract_and_chained_train_head(server):
    env, api = server, server["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", "mmfeat-process", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--all")
    worker_log = open(os.path.join(env["PREFECT_HOME"], "worker.log"), "w")
    worker = subprocess.Popen([os.path.join(BIN, "prefect"), "worker", "start", "--pool", "mmfeat-process"],
                              env=env, cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        _prefect(env, "deployment", "run", "extract/sample-text", "--watch", timeout=600)
        deadline = time.time() + 300
        runs = []
        while time.time() < deadline:
            runs = _api(f"{api}/flow_runs/filter", {"flow_runs": {"name": {}}, "sort": "EXPECTED_START_TIME_DESC"})
            heads = [r for r in runs if r["parameters"].get("feature_sets")]
            if any(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in heads):
                break
            time.sleep(2)
        assert heads and heads[0]["state_type"] == "COMPLETED", [(r["name"], r["state_type"], r["parameters"]) for r in runs]
        feature_set = heads[0]["parameters"]["feature_sets"]
        assert feature_set.startswith("sample-text/bert-")
        # (the nightly schedules also created future runs of the extract deployments: not these)
        (extract_run,) = [r for r in runs if "source" in r["parameters"] and r["state_type"] == "COMPLETED"]
        assert extract_run["state"]["message"] == feature_set  # what the Completed trigger passed on
        time.sleep(10)  # the completed train-head run must not trigger another one (the trigger matches flow extract)
        runs = _api(f"{api}/flow_runs/filter", {"flow_runs": {"name": {}}})
        started = [r for r in runs if "feature_sets" in r["parameters"] and r["state_type"] != "SCHEDULED"]
        assert len(started) == 1, [(r["name"], r["state_type"], r["parameters"]) for r in runs]
        from pipeline.store import FeatureStore

        fs = FeatureStore(env["MMFEAT_STORE"]).resolve(feature_set)
        assert fs.table().num_rows == 60 and fs.rejects().num_rows == 2
        heads_dir = os.path.join(env["MMFEAT_STORE"], "_heads")
        (head,) = os.listdir(heads_dir)
        for f in ("head.json", "head.safetensors", "confusion.png", "report.md"):
            assert os.path.exists(os.path.join(heads_dir, head, "latest", f))
        artifacts = _api(f"{api}/artifacts/filter", {})
        assert {"progress", "table", "markdown"} <= {a["type"] for a in artifacts}
        _drifted_night_runs_the_audit(env, api, feature_set, head)
    finally:
        worker.terminate()
        worker.wait(30)
