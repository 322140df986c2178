"""The house rules, checked: no import cycle in pipeline/, short functions, heads that never reach into a
backbone's private attributes, stored feature set ids that never move, and every registered extractor and
head kind through the same contract; a plugin head kind in one module, through every entry point."""
import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SAMPLE

PIPELINE = os.path.join(ROOT, "pipeline")


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, names in os.walk(PIPELINE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                out[module[:-9] if module.endswith(".__init__") else module] = path
    return out


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """Every module of pipeline/ that ``module`` imports, at the top or inside a function."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules}
            out |= subs | ({target} if len(subs) < len(node.names) and target in modules else set())
    return out - {module}


def test_no_import_cycle_in_pipeline():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_function_over_sixty_lines():
    long = [f"{os.path.relpath(p, ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in _modules().values() for n in ast.walk(ast.parse(open(p).read()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def test_only_extractors_touch_a_backbone_s_private_attributes():
    private = {"_blocks", "_conv_head", "_bn1", "_swish", "_global_params", "_conv_stem", "_fc"}
    found = [f"{os.path.relpath(p, ROOT)}:{n.lineno} .{n.attr}" for p in _modules().values()
             if not p.startswith(os.path.join(PIPELINE, "extractors"))
             for n in ast.walk(ast.parse(open(p).read())) if isinstance(n, ast.Attribute) and n.attr in private]
    assert not found, found


# Feature set ids users' stores hold: a change here re-extracts everyone's data (bump a version on purpose).
PINNED_IDS = {
    ("cnn", ()): "69c65cd3dc7a32ef66451183738a4ab7b748ce4c5bd09bd959941e38c5471ad5",
    ("cnn", (("model", "efficientnet_lite0"),)): "7ab17d71c646eefccd5e65f5ad91b6031b99d29afce52ca3b57cc7535228db24",
    ("bert", ()): "93df340a20bac1ed18bafe7a5f85e2f7ab542572d88166fdb95b6161f1a458ea",
    ("spectral", ()): "9153ada8262d5aed13ec83d26c7d81a95e36253e454ca7d06ede0573fb144659",
    ("spectral", (("preset", "speech"),)): "6bb178be3acc64cdff545d7bae9f26794dd04c599d65434316a3421c6935cf2f",
}


@pytest.mark.parametrize("name,overrides", list(PINNED_IDS))
def test_stored_feature_set_ids_never_move(name, overrides):
    from pipeline.registry import cheap_config_id, create_extractor

    expected = PINNED_IDS[(name, overrides)]
    assert cheap_config_id(name, dict(overrides)) == expected  # what a no-op run computes without the model
    assert create_extractor(name, dict(overrides)).config_id == expected
    runtime = {"cnn": {"batch_size": "3", "device": "cpu"}, "bert": {"batch_size": "3"},
               "spectral": {"batch_size": "3", "num_workers": "0"}}[name]
    assert cheap_config_id(name, {**dict(overrides), **runtime}) == expected  # runtime keys change nothing


@pytest.fixture(scope="module")
def kind_sets(tmp_path_factory):
    """A small set each built-in kind trains on: dense vectors, frame sequences, cnn activations, bert token
    states of a layer, pooled cnn features (whose images the network is tuned on)."""
    from sklearn.datasets import load_digits

    from pipeline.extract import extract
    from pipeline.store import FeatureStore, import_arrays

    root = str(tmp_path_factory.mktemp("kinds"))
    x, y = load_digits(return_X_y=True)
    prov = {"format": 2, "dataset": "digits", "extractor": "pixels", "extractor_version": "1", "config": {},
            "config_id": "d" * 64, "weights_sha256": None, "dim": 64, "versions": {}, "created": "now"}
    dense = import_arrays(FeatureStore(root), prov, [f"d{i:04d}" for i in range(400)], x[:400],
                          [str(v) for v in y[:400]]).name
    small = {"model": "efficientnet_lite0", "image_size": "64"}
    made = [extract(os.path.join(SAMPLE, "audio", "manifest.csv"), "audio", "spectral", {"frames": "true"},
                    dataset="frames", store=root, progress=False),
            extract(os.path.join(SAMPLE, "images"), "image", "cnn", {**small, "activations": "_blocks.15"},
                    dataset="act", store=root, progress=False),
            extract(os.path.join(SAMPLE, "texts.jsonl"), "text", "bert", {"frames": "true", "frames_layer": "4"},
                    dataset="states", store=root, progress=False),
            extract(os.path.join(SAMPLE, "images"), "image", "cnn", small, dataset="pooled", store=root, progress=False)]
    return root, [dense] + [m["feature_set"] for m in made]


def _takes(kind, fs) -> bool:
    from pipeline.errors import MmfeatError
    from pipeline.heads import HeadConfig

    try:
        kind.check([fs], HeadConfig())
    except MmfeatError:
        return False
    return kind.accepts([fs])


@pytest.mark.slow
def test_every_head_kind_trains_saves_loads_and_predicts_alike(kind_sets, tmp_path):
    """Each registered kind on a set it accepts: the head saved, loaded back and applied gives on its own test
    items the accuracy its card reports, and its probabilities are finite and deterministic."""
    from pipeline.heads import kinds, predict, train_head
    from pipeline.store import FeatureStore

    root, names = kind_sets
    st = FeatureStore(root)
    quick = {"max_epochs": "2", "patience": "1"}
    for name, kind in kinds().items():
        spec = next((n for n in names if _takes(kind(), st.resolve(n))), None)
        assert spec, f"no set for {name}"
        overrides = {"head": name, **{k: v for k, v in quick.items() if k in kind.params_type.__dataclass_fields__}}
        card = train_head([spec], overrides, root, str(tmp_path / name))
        target = card["feature_sets"][0]["name"]
        one, two = predict(str(tmp_path / name), target, root), predict(str(tmp_path / name), target, root)
        assert one["accuracy_test"] == pytest.approx(card["metrics"]["accuracy"], abs=1e-9), name
        assert one["labelled_test"] == card["metrics"]["n_test"] and one == two, name
        assert card["kind"] == name and card["head"] == name


@pytest.mark.slow
def test_a_plugin_head_kind_in_one_module_through_cli_and_flow(tmp_path):
    plugin = os.path.join(ROOT, "tests", "plugins", "mmfeat_knn.py")
    assert len(open(plugin).read().splitlines()) <= 60
    env = {**os.environ, "MMFEAT_PLUGINS": "helpers,mmfeat_knn",
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "tests"), os.path.dirname(plugin), ROOT])}
    store = str(tmp_path / "store")
    cli = [sys.executable, "-m", "pipeline.cli"]

    def mmfeat(*args):
        r = subprocess.run(cli + list(args), capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "--head knn" in mmfeat("describe", "head")
    from helpers import write_text_manifest

    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 80)
    s = json.loads(mmfeat("extract", manifest, "--extractor", "test-hash", "--store", store, "--json"))
    card = json.loads(mmfeat("train-head", s["feature_set"], "--head", "knn", "--set", "k=3", "--store", store, "--json"))
    assert 0 <= card["metrics"]["accuracy"] <= 1
    assert json.loads(mmfeat("predict", card["head"], s["feature_set"], "--store", store, "--json"))["rows"] == s["rows"]
    flow = ("from prefect.testing.utilities import prefect_test_harness\nfrom flows import train_head_flow\n"
            "with prefect_test_harness():\n"
            f"    print(train_head_flow({s['feature_set']!r}, head='knn', overrides={{'k': '3'}}, store={store!r}))")
    r = subprocess.run([sys.executable, "-c", flow], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith("head.json"), r.stderr[-3000:]
    assert json.load(open(r.stdout.strip().splitlines()[-1]))["kind"] == "knn"


def test_registries_refuse_a_taken_name():
    import dataclasses

    import torch

    from pipeline.heads import HeadKind, register_head

    @dataclasses.dataclass(frozen=True)
    class P:
        pass

    class Again(HeadKind):
        name, params_type = "linear", P

        def train(self, job):
            raise NotImplementedError

        def build(self, card):
            return torch.nn.Identity()

    from pipeline.heads import kinds

    kinds()
    with pytest.raises(ValueError, match="taken"):
        register_head(Again)
    np.testing.assert_equal(sorted(kinds()) == sorted(set(kinds())), True)
