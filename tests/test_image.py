import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLE
from pipeline.extractors.image.cnn import CNNConfig, CNNExtractor
from pipeline.extractors.image.decode import resize_crop_pil, resize_crop_tensor
from pipeline.registry import ItemBatch

CATS = set(range(281, 286))
CUPS = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def cnn():
    return CNNExtractor(CNNConfig())


@pytest.mark.parametrize("model", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_real_imagenet_weights_classify_cat_and_espresso(cnn, model):
    import skimage.data

    assert cnn.config.model == "efficientnet_lite1"  # the default
    cnn = cnn if model == cnn.config.model else CNNExtractor(CNNConfig(model=model))
    assert cnn.crop == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[model]
    x = torch.stack([resize_crop_pil(Image.fromarray(img), cnn.resize, cnn.crop, "bilinear")
                     for img in (skimage.data.chelsea(), skimage.data.coffee())]).float()
    with torch.inference_mode():
        logits = cnn.net.model(((x - cnn.mean) / cnn.std))
    top5 = logits.topk(5).indices.tolist()
    assert CATS & set(top5[0]) and CUPS & set(top5[1])
    assert cnn.dim == 1280 and len(cnn.weights_sha256) == 64


def _save(img, path, **kw):
    img.save(path, **kw)
    return str(path)


def test_modes_and_bad_files(cnn, tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    good = [_save(rgb, tmp_path / "a.jpg"), _save(rgb.convert("P"), tmp_path / "p.png"),
            _save(rgb.convert("RGBA"), tmp_path / "rgba.png"), _save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg"),
            _save(rgb.convert("L"), tmp_path / "l.png"),
            _save(Image.fromarray((np.arange(2400).reshape(40, 60) * 20).astype(np.uint16)), tmp_path / "i16.png")]
    data = open(good[0], "rb").read()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    bomb = tmp_path / "bomb.png"
    Image.new("L", (10000, 9000)).save(bomb)  # 90 MP > Pillow's limit: a decompression-bomb warning -> error
    bad = [str(tmp_path / n) for n in ("trunc.jpg", "zero.jpg", "text.png", "bomb.png", "missing.jpg")]
    paths = good + bad
    r = cnn.extract(ItemBatch([str(i) for i in range(len(paths))], paths))
    assert list(r.ok) == list(range(len(good)))
    assert [x.reason for x in r.rejects] == ["truncated", "empty_file", "not_an_image", "decompression_bomb",
                                             "missing_file"]
    assert np.isfinite(r.features).all()


def test_deterministic_and_workers_do_not_change_features(cnn):
    folder = os.path.join(SAMPLE, "images", "stripes")
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    batch = ItemBatch([str(i) for i in range(len(paths))], paths)
    a = cnn.extract(batch).features
    b = CNNExtractor(CNNConfig(num_workers=2, batch_size=4)).extract(batch).features
    np.testing.assert_array_equal(a, cnn.extract(batch).features)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_device_side_resize_matches_worker_resize():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 420, 3), dtype=np.uint8))
    pil = resize_crop_pil(img, 256, 224, "bilinear").float()
    t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    dev = resize_crop_tensor([t], 256, 224, "bilinear")[0]
    assert (pil - dev).abs().mean() < 2.0  # antialiased bilinear in both; rounding differs


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet10t"])
def test_torchvision_and_timm_from_local_weights(model, tmp_path):
    family, name = model.split(":")
    if family == "torchvision":
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    else:
        import timm

        net = timm.create_model(name, pretrained=False)
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    ext = CNNExtractor(CNNConfig(model=model, weights=str(path), layers=("penultimate", "layer3")))
    img = os.path.join(SAMPLE, "images", "circles", "circles_00.jpg")
    r = ext.extract(ItemBatch(["a"], [img]))
    assert r.features.shape == (1, ext.dim) and ext.dim == 512 + 256


def test_flip_tta_and_imagenet_normalization_change_features():
    img = os.path.join(SAMPLE, "images", "circles", "circles_00.jpg")
    base = CNNExtractor(CNNConfig())
    others = [CNNExtractor(CNNConfig(flip_tta=True)), CNNExtractor(CNNConfig(normalization="imagenet"))]
    ref = base.extract(ItemBatch(["a"], [img])).features
    for ext in others:
        assert ext.config_id != base.config_id
        assert not np.allclose(ext.extract(ItemBatch(["a"], [img])).features, ref)
    assert CNNExtractor(CNNConfig(batch_size=7)).config_id == base.config_id  # runtime fields keep the id


@pytest.mark.gpu
def test_cuda_bf16_path_runs_and_is_deterministic():
    folder = os.path.join(SAMPLE, "images", "squares")
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    ext = CNNExtractor(CNNConfig(device="cuda"))
    batch = ItemBatch([str(i) for i in range(len(paths))], paths)
    a, b = ext.extract(batch).features, ext.extract(batch).features
    np.testing.assert_array_equal(a, b)
    cpu = CNNExtractor(CNNConfig(device="cpu")).extract(batch).features
    cos = (a * cpu).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(cpu, axis=1)
    assert cos.min() > 0.98
