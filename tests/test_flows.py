"""Flows under an ephemeral Prefect API, and the Dask task runner on a 2-process LocalCluster."""
import os

import pytest

from conftest import SAMPLE
from helpers import write_text_manifest


@pytest.fixture(scope="module")
def harness():
    saved = {k: os.environ.get(k) for k in ("MMFEAT_PLUGINS", "PYTHONPATH")}
    os.environ["MMFEAT_PLUGINS"] = "helpers"  # Dask workers import the test-only extractor too
    os.environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        for key, value in saved.items():  # later tests (and their subprocesses) see the user's environment
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_extract_and_train_head_flows(harness, store):
    from flows import extract_flow, predict_flow, train_head_flow

    fs = extract_flow(os.path.join(SAMPLE, "texts.jsonl"), "text", "word2vec", {"min_count": "1"}, store=store,
                      shard_size=25)
    assert fs.startswith("texts/word2vec-")
    card = train_head_flow([fs], store=store)
    assert card.endswith("head.json") and os.path.exists(card)
    assert predict_flow(os.path.dirname(card), [fs], store=store).endswith(".parquet")


def test_bad_parameters_fail_before_work_naming_the_field(harness, store):
    from prefect.exceptions import ParameterTypeError

    from flows import extract_flow
    from pipeline.errors import MmfeatError

    with pytest.raises(ParameterTypeError, match="modality"):
        extract_flow(os.path.join(SAMPLE, "texts.jsonl"), "sound", store=store)
    with pytest.raises(MmfeatError, match="pooling"):
        extract_flow(os.path.join(SAMPLE, "texts.jsonl"), "text", "bert", {"pooling": "median"}, store=store)
    assert not os.path.exists(store)


def test_dask_runner_matches_local_and_survives_a_killed_worker(harness, tmp_path):
    from flows import extract_flow
    from flows.runners import task_runner
    from pipeline.store import FeatureStore

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 120, empty_every=9)
    local = extract_flow(manifest, "text", "test-hash", store=str(tmp_path / "a"), shard_size=20)
    dask_flow = extract_flow.with_options(task_runner=task_runner("dask", workers=2))
    kill = {"kill_once_file": str(tmp_path / "killed")}
    remote = dask_flow(manifest, "text", "test-hash", kill, store=str(tmp_path / "b"), shard_size=20)
    assert os.path.exists(tmp_path / "killed") and remote == local  # runtime field: same feature set id
    a = FeatureStore(str(tmp_path / "a")).resolve(local).table().sort_by("id")
    b = FeatureStore(str(tmp_path / "b")).resolve(remote).table().sort_by("id")
    assert a.equals(b) and a.num_rows == 120 - 14


PLUGIN = '''
import dataclasses, functools
import numpy as np
from pipeline.extractors.batching import MapExtractor
from pipeline.extractors.text.common import read_text
from pipeline.registry import register_extractor


@dataclasses.dataclass(frozen=True)
class LengthsConfig:
    scale: float = 1.0

    def __post_init__(self):
        if self.scale <= 0:
            raise ValueError("scale must be > 0")


@register_extractor
class Lengths(MapExtractor):
    name, modality, config_type, dim = "lengths", "text", LengthsConfig, 3

    def decoder(self, kind):
        return functools.partial(read_text, kind=kind, max_chars=100_000)

    def embed(self, texts):
        return np.array([[len(t) * self.config.scale, len(t.split()), t.count("e")] for t in texts], np.float32)
'''


def test_plugin_extractor_through_cli_head_and_flow(harness, tmp_path, monkeypatch):
    """A map-style extractor of 20 lines, registered through MMFEAT_PLUGINS, in every entry point."""
    import json
    import subprocess
    import sys

    from flows import extract_flow

    (tmp_path / "mmfeat_lengths.py").write_text(PLUGIN)
    store = str(tmp_path / "store")
    env = {**os.environ, "MMFEAT_PLUGINS": "mmfeat_lengths", "PYTHONPATH": str(tmp_path)}
    texts = os.path.join(SAMPLE, "texts.jsonl")
    cli = [sys.executable, "-m", "pipeline.cli"]
    r = subprocess.run(cli + ["extract", texts, "--modality", "text", "--extractor", "lengths", "--store", store,
                              "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == 60 and out["rejected"] == 2
    r = subprocess.run(cli + ["train-head", out["feature_set"], "--store", store, "--out", str(tmp_path / "h"), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MMFEAT_PLUGINS", "helpers,mmfeat_lengths")
    assert extract_flow(texts, "text", "lengths", {"scale": "2"}, store=store).startswith("texts/lengths-")


def test_flow_that_rejects_too_much_fails(harness, tmp_path):
    from flows import extract_flow

    bad = tmp_path / "bad.csv"
    bad.write_text("id,path\n" + "".join(f"x{i},missing/{i}.png\n" for i in range(5)))
    state = extract_flow(str(bad), "image", store=str(tmp_path / "store"), return_state=True)
    assert state.is_failed() and "5 of 5 items rejected" in state.message


def test_a_run_that_changes_nothing_triggers_nothing(harness, tmp_path):
    from flows import extract_flow

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 12)
    store = str(tmp_path / "store")
    first = extract_flow(manifest, "text", "test-hash", store=store, return_state=True)
    again = extract_flow(manifest, "text", "test-hash", store=store, return_state=True)
    assert first.name == "Completed" and again.is_completed() and again.name == "Unchanged"
    assert again.message == first.message  # still names the feature set


def test_finetune_flow_tunes_a_top_from_activations_or_the_network_on_images(harness, tmp_path):
    from flows import finetune_flow

    store = str(tmp_path / "st")
    weights = str(tmp_path / "tuned.pth")
    card = finetune_flow(os.path.join(SAMPLE, "images"), overrides={"max_epochs": "3"}, store=store, export_to=weights)
    assert card.endswith("head.json") and os.path.exists(weights)
    import json

    assert json.load(open(card))["data"]["finetune"]["tuned"][0] == "_blocks.20"
    # activations=None: the network itself, its last 2 blocks, tuned on the images
    net = finetune_flow(os.path.join(SAMPLE, "images"), model="efficientnet_lite0", activations=None, tune_blocks=2,
                        overrides={"max_epochs": "2", "keep_probe": "false"}, store=store,
                        export_to=str(tmp_path / "net.pth"))
    info = json.load(open(net))["data"]["finetune"]
    assert info["mode"] == "network" and info["tuned"][:2] == ["_blocks.14", "_blocks.15"]
    assert os.path.exists(tmp_path / "net.pth")
