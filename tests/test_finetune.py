"""Activations as a tensor feature set, and the pretrained top fine-tuned on them (pretrain -> fine-tune)."""
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


def test_finetune_needs_an_activation_set(tmp_path):
    root = str(tmp_path / "st")
    s = extract(IMAGES, "image", "cnn", {}, store=root, progress=False)
    with pytest.raises(MmfeatError, match="activation set"):
        train_head([s["feature_set"]], {"head": "finetune"}, root, str(tmp_path / "h"))


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
        from pipeline.heads.finetune import export_weights

        export_weights(linear["head_dir"], str(tmp_path / "no.pth"))
