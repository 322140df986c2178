"""Activations as a tensor feature set, and the pretrained top fine-tuned on them (pretrain -> fine-tune)."""
import os

import duckdb
import numpy as np
import pytest
import torch

from pipeline.errors import MmfeatError
from pipeline.extract import extract
from pipeline.extractors.image.cnn import CNNConfig, CNNExtractor
from pipeline.heads import predict, train_head
from pipeline.registry import ItemBatch, bf16_bits, from_bf16_bits
from pipeline.store import FeatureStore

IMAGES = "sample_data/images"


@pytest.fixture(scope="module")
def activations(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("act"))
    s = extract(IMAGES, "image", "cnn", {"activations": "_blocks.19"}, store=root, progress=False)
    return root, s["feature_set"]


def test_bf16_bits_round_trip_and_non_finite_rows():
    from pipeline.registry import finite_rows

    x = torch.tensor([[1.0, -2.5, 3.14159], [float("nan"), 0.0, float("inf")]])
    bits = bf16_bits(x)
    assert bits.dtype == np.uint16 and bits.shape == (2, 3)
    np.testing.assert_allclose(from_bf16_bits(bits[:1]), [[1.0, -2.5, 3.140625]])  # bf16: 8 bits of mantissa
    assert list(finite_rows(bits)) == [True, False]


def test_activations_are_stored_as_tensors_readable_everywhere(activations):
    root, name = activations
    fs = FeatureStore(root).resolve(name)
    assert fs.tensor_shape == (192, 8, 8) and fs.dim == 192 * 64  # Lite1 at 240 px, below its last block
    assert fs.manifest["tensor"] == {"shape": [192, 8, 8], "dtype": "bfloat16"}
    ids, x, _ = fs.numpy()
    ext = CNNExtractor(CNNConfig(activations="_blocks.19"))
    first = ext.extract(ItemBatch([ids[0]], [f"{IMAGES}/{ids[0]}"])).features
    np.testing.assert_array_equal(from_bf16_bits(first)[0], x[0])  # what is read is what the network gave
    n = duckdb.sql(f"SELECT count(*), min(len(features)) FROM read_parquet('{fs.path}/part-*.parquet')").fetchall()[0]
    assert n == (len(ids), 192 * 64)
    with pytest.raises(ValueError, match="activations stores one module"):
        CNNConfig(activations="_blocks.19", flip_tta=True)


def test_finetuned_top_trains_on_activations_and_predicts(activations, tmp_path):
    root, name = activations
    card = train_head([name], {"head": "finetune", "max_epochs": "8", "patience": "3"}, root, str(tmp_path / "ft"))
    tuned = card["data"]["finetune"]
    assert tuned["tuned"] == ["_blocks.20", "_conv_head", "_bn1"] and tuned["model"] == "efficientnet_lite1"
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
    assert "fine-tuned" in open(card["path"] + "/report.md").read()
    out = predict(str(tmp_path / "ft"), name, root)
    assert out["rows"] == card["data"]["joined"] and out["accuracy"] > 0.8
    # the saved top differs from the pretrained one it started from (it was tuned), and reloads exactly
    from safetensors.torch import load_file

    from pipeline.extractors.image.models import load_backbone

    saved = load_file(card["path"] + "/head.safetensors")
    pretrained = load_backbone("efficientnet_lite1", None).model._blocks[20].state_dict()
    assert any(not torch.equal(saved[f"blocks.0.{k}"], v) for k, v in pretrained.items() if v.is_floating_point())


def test_network_finetune_on_images_closes_the_loop(tmp_path):
    """finetune on a pooled cnn set tunes the network itself on the images (here its last 2 blocks, at a
    small size to stay fast on a CPU); the head applies to the set extracted with the tuned weights,
    predicts raw inputs in one call, and exports the tuned network as cnn weights."""
    import shutil

    from pipeline.cli import run
    from pipeline.config import sha256_file
    from pipeline.extractors.image.models import load_backbone
    from pipeline.heads import predict_source

    root = str(tmp_path / "st")
    base = extract(IMAGES, "image", "cnn", {"image_size": "96"}, store=root, progress=False)["feature_set"]
    card = train_head([base], {"head": "finetune", "tune_blocks": "2", "max_epochs": "3", "keep_probe": "false"}, root,
                      str(tmp_path / "ft"))
    info = card["data"]["finetune"]
    assert info["mode"] == "network" and info["tuned"] == ["_blocks.19", "_blocks.20", "_conv_head", "_bn1"]
    assert info["base_feature_set"] == base and card["feature_sets"][0]["name"] != base
    tuned_set = FeatureStore(root).resolve(card["feature_sets"][0]["name"])
    assert tuned_set.manifest["weights_sha256"] == sha256_file(info["weights"])
    assert tuned_set.manifest["config"]["image_size"] == 96
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
    assert "On the images themselves" in open(card["path"] + "/report.md").read()
    # only what tune_blocks names was tuned: block 0 is the pretrained one, bit for bit
    tuned, pretrained = torch.load(info["weights"], weights_only=True), load_backbone("efficientnet_lite1", None).model
    for name, value in pretrained.state_dict().items():
        if name.startswith(("_blocks.0.", "_conv_stem", "_fc.")):
            assert torch.equal(tuned[name], value), name
    assert any(not torch.equal(tuned[n], v) for n, v in pretrained.state_dict().items()
               if n.startswith("_blocks.20.") and v.is_floating_point())
    # raw inputs in one call: new images are extracted with the tuned network, then predicted
    new = tmp_path / "new"
    for label in ("circles", "stripes"):
        (new / label).mkdir(parents=True)
        for f in sorted(os.listdir(f"{IMAGES}/{label}"))[:3]:
            shutil.copy(f"{IMAGES}/{label}/{f}", new / label / f)
    out = predict_source(str(tmp_path / "ft"), str(new), root, dataset="incoming")
    assert out["rows"] == 6 and out["feature_sets"][0].startswith("incoming/cnn-")
    assert FeatureStore(root).resolve(out["feature_sets"][0]).config_id == tuned_set.config_id
    assert out["accuracy"] >= 0.5
    assert run(["predict", str(tmp_path / "ft"), "--source", str(new), "--dataset", "incoming", "--store", root]) == 0
    with pytest.raises(MmfeatError, match="not both"):
        run(["predict", str(tmp_path / "ft"), base, "--source", str(new), "--store", root])
    # export: the tuned network, as it was extracted with
    weights = str(tmp_path / "tuned.pth")
    assert run(["export", str(tmp_path / "ft"), "--out", weights, "--store", root]) == 0
    assert sha256_file(weights) == sha256_file(info["weights"])
    load_backbone("efficientnet_lite1", weights)
    # the run carries its own copy: without <head>/networks (another machine, a head fetched from S3),
    # raw inputs still extract with the tuned network (same set id) and export still works
    shutil.rmtree(tmp_path / "ft" / "networks")
    again = predict_source(str(tmp_path / "ft"), str(new), root, dataset="elsewhere")
    assert FeatureStore(root).resolve(again["feature_sets"][0]).config_id == tuned_set.config_id
    assert run(["export", str(tmp_path / "ft"), "--out", str(tmp_path / "again.pth"), "--store", root]) == 0
    assert sha256_file(str(tmp_path / "again.pth")) == sha256_file(weights)


def test_network_finetune_of_all_layers_runs_on_the_cpu(tmp_path):
    """All layers, on a glob labelled from file names: the second extraction reads the source as the
    first did (a rerun without the pattern would publish the items without their labels)."""
    root = str(tmp_path / "st")
    base = extract(f"{IMAGES}/*/*.png", "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"},
                   dataset="pngs", store=root, progress=False, label_from_name="(?P<label>[a-z]+)_")["feature_set"]
    card = train_head([base], {"head": "finetune", "max_epochs": "2", "keep_probe": "false"}, root,
                      str(tmp_path / "ft"))
    info = card["data"]["finetune"]
    assert info["tuned"] == ["all layers"] and info["epochs_run"] >= 1 and info["precision"] == "float32"
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
    current = FeatureStore(root).dataset("pngs").record()
    assert current["changes"]["metadata_changed"] == 0 and current["read"]["label_from_name"] == "(?P<label>[a-z]+)_"
    assert None not in FeatureStore(root).resolve(base).table(columns=["label"])["label"].to_pylist()
    with pytest.raises(MmfeatError, match="tune_blocks must be 1..16"):
        train_head([base], {"head": "finetune", "tune_blocks": "17"}, root, str(tmp_path / "bad"))


def test_training_crops_and_unreadable_images():
    from pipeline.heads.image_batches import Images, collate, random_crops

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    gen = torch.Generator().manual_seed(0)
    whole = random_crops(x, 6, gen)  # a crop of the full size: each image as it is, or mirrored
    for i in range(2):
        assert torch.equal(whole[i], x[i]) or torch.equal(whole[i], x[i].flip(-1))
    part = random_crops(x, 4, gen)
    assert part.shape == (2, 3, 4, 4)
    windows = [x[i, :, t:t + 4, u:u + 4] for t in range(3) for u in range(3) for i in range(2)]
    assert all(any(torch.equal(part[i], w) or torch.equal(part[i], w.flip(-1)) for w in windows) for i in range(2))

    from pipeline.errors import BadInput

    def decode(path):
        if path == "bad":
            raise BadInput("corrupt_image", "no")
        return torch.zeros(3, 2, 2, dtype=torch.uint8)

    images = Images(["good", "bad"], np.array([0, 1]), decode)
    batch, labels, skipped = collate([images[0], images[1]])
    assert batch.shape == (1, 3, 2, 2) and labels.tolist() == [0] and skipped == ["corrupt_image: bad"]


def test_tuned_top_exports_as_extractor_weights(activations, tmp_path):
    """Close the loop: the tuned network becomes cnn weights; extraction with them gives new features
    (a new set id through the weights' hash), whose last-block activations feed the rest unchanged."""
    from pipeline.cli import run

    root, name = activations
    card = train_head([name], {"head": "finetune", "max_epochs": "4", "patience": "2"}, root, str(tmp_path / "ft"))
    weights = str(tmp_path / "tuned.pth")
    assert run(["export", str(tmp_path / "ft"), "--out", weights, "--store", root]) == 0
    state = torch.load(weights, weights_only=True)
    from safetensors.torch import load_file

    saved = load_file(card["path"] + "/head.safetensors")
    torch.testing.assert_close(state["_blocks.20._project_conv.weight"], saved["blocks.0._project_conv.weight"])
    tuned = extract(IMAGES, "image", "cnn", {"model": "efficientnet_lite1", "weights": weights}, store=root,
                    dataset="tuned", progress=False)
    plain = FeatureStore(root).resolve(extract(IMAGES, "image", "cnn", {}, store=root, progress=False)["feature_set"])
    again = FeatureStore(root).resolve(tuned["feature_set"])
    assert again.config_id != plain.config_id and again.manifest["weights_sha256"] != plain.manifest["weights_sha256"]
    assert not np.allclose(again.numpy()[1], plain.numpy()[1])
    with pytest.raises(MmfeatError, match="no network layers to export"):
        linear = train_head([plain.name], {}, root, str(tmp_path / "lin"))
        from pipeline.heads.export import export

        export(linear["head_dir"], str(tmp_path / "no.pth"))


def test_text_encoder_top_tunes_from_token_states_and_exports(tmp_path):
    """bert frames at layer K: the layers above K rebuilt from the store give the extractor's own pooled
    vector before tuning; tuned, they predict and export as a model directory bert extracts with."""
    from pipeline.cli import run
    from pipeline.extractors.text.encoder_top import encoder_top
    from pipeline.heads.frames import padded

    root = str(tmp_path / "st")
    cfg = {"frames": "true", "frames_layer": "3", "precision": "fp32"}
    s = extract("sample_data/texts.jsonl", "text", "bert", cfg, store=root, progress=False)["feature_set"]
    fs = FeatureStore(root).resolve(s)
    table = fs.table(columns=["id", "features", "frames"])
    top, tuned = encoder_top(fs.manifest["config"]["model"], 3, 3, 0.0)
    assert tuned == ["encoder.layer.4", "encoder.layer.5"]
    with torch.no_grad():
        pooled = top.eval().pooled(torch.from_numpy(padded(table["frames"], fs.manifest["frame_dim"])))
    pooled = torch.nn.functional.normalize(pooled, dim=1).numpy()
    stored = np.stack(table["features"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(pooled, stored, atol=2e-5)  # short texts: one window each, as extracted
    card = train_head([s], {"head": "finetune", "max_epochs": "4", "patience": "2"}, root, str(tmp_path / "ft"))
    assert card["data"]["finetune"]["tuned"] == tuned and card["metrics"]["accuracy"] > 0.8
    assert predict(str(tmp_path / "ft"), s, root)["accuracy"] > 0.8
    out = str(tmp_path / "tuned-encoder")
    assert run(["export", str(tmp_path / "ft"), "--out", out, "--store", root]) == 0
    again = extract("sample_data/texts.jsonl", "text", "bert", {"model": out}, store=root, dataset="again", progress=False)
    plain = extract("sample_data/texts.jsonl", "text", "bert", {}, store=root, dataset="plain", progress=False)
    a, b = (FeatureStore(root).resolve(x["feature_set"]) for x in (again, plain))
    assert a.manifest["weights_sha256"] != b.manifest["weights_sha256"] and not np.allclose(a.numpy()[1], b.numpy()[1])
    with pytest.raises(MmfeatError, match="nothing above it"):
        last = extract("sample_data/texts.jsonl", "text", "bert", {"frames": "true", "frames_layer": "5"}, store=root,
                       progress=False)["feature_set"]
        train_head([last], {"head": "finetune"}, root, str(tmp_path / "bad"))


def test_network_finetune_survives_an_image_broken_after_extraction(tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    root = str(tmp_path / "st")
    base = extract(str(images), "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"}, store=root,
                   progress=False)["feature_set"]
    victim = sorted((images / "circles").iterdir())[0]
    victim.write_bytes(b"not an image any more")
    card = train_head([base], {"head": "finetune", "tune_blocks": "1", "max_epochs": "1", "keep_probe": "false"},
                      root, str(tmp_path / "ft"))
    info = card["data"]["finetune"]
    assert sum(info["missing_from_tuned_set"].values()) == 1  # rejected by the second extraction, and said so
    trained_on = info["unreadable_skipped"]
    assert trained_on == [] or trained_on == [f"not_an_image: {victim.name}"]
    assert card["data"]["split_source"] == "the base set's splits"  # not a new draw


@pytest.mark.gpu
def test_network_finetune_on_cuda_in_mixed_precision(tmp_path):
    """The GPU path of network fine-tuning: workers decode, bf16 autocast, the tuned set extracted on CUDA."""
    root = str(tmp_path / "st")
    base = extract(IMAGES, "image", "cnn", {"device": "cuda"}, store=root, progress=False)["feature_set"]
    card = train_head([base], {"head": "finetune", "device": "cuda", "max_epochs": "3", "patience": "2"}, root,
                      str(tmp_path / "ft"))
    info = card["data"]["finetune"]
    assert info["precision"] == "bfloat16" and info["device"].startswith("cuda") and info["tuned"] == ["all layers"]
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]


def test_tune_blocks_is_refused_where_it_would_mean_nothing(activations, tmp_path):
    root, name = activations
    with pytest.raises(MmfeatError, match="store a lower one"):
        train_head([name], {"head": "finetune", "tune_blocks": "2"}, root, str(tmp_path / "a"))
    with pytest.raises(MmfeatError, match="tune_blocks"):
        train_head([name], {"head": "linear", "tune_blocks": "2"}, root, str(tmp_path / "b"))


def test_network_finetune_keeps_the_probe_when_tuning_does_not_beat_it_and_says_what_the_budget_allowed(tmp_path):
    """Shapes the frozen probe already separates: the probe stays (nothing written, nothing extracted again),
    the report says so plainly; a budget that fits no epoch trains none and says it was the budget."""
    root = str(tmp_path / "st")
    base = extract(IMAGES, "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"}, store=root,
                   progress=False)["feature_set"]
    card = train_head([base], {"head": "finetune", "max_epochs": "2"}, root, str(tmp_path / "ft"))
    info = card["data"]["finetune"]
    assert info["kept_probe"] and card["selected"]["epoch"] == 0 and info["probe_val_accuracy"] == 1.0
    assert info["train_size"] == 64 and info["epochs_run"] == 2 and not info["budget_limited"]
    assert card["feature_sets"][0]["name"] == base and not os.path.exists(tmp_path / "ft" / "networks")
    report = open(card["path"] + "/report.md").read()
    assert "did not beat the linear probe" in report and "nothing was written or extracted again" in report
    broke = train_head([base], {"head": "finetune", "max_minutes": "0.001"}, root, str(tmp_path / "broke"))
    info = broke["data"]["finetune"]
    assert info["epochs_planned"] == 0 and info["epochs_run"] == 0 and info["budget_limited"] and info["kept_probe"]
    assert "(budget-limited)" in open(broke["path"] + "/report.md").read()
