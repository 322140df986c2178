"""What a user sees (issue #14): options listed from the registry, labels from file names, dry runs,
samples, globs, group-aware splits, honest metrics."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import SAMPLE
from pipeline.errors import MmfeatError


def test_describe_lists_every_key_with_a_doc(capsys):
    from pipeline.cli import run
    from pipeline.heads import HeadConfig, kinds
    from pipeline.options import describe_extractor, options
    from pipeline.registry import list_extractors

    for name in ("cnn", "bert", "word2vec", "tfidf", "spectral"):  # the built-ins (tests register others)
        entry = describe_extractor(name)
        assert entry["options"] and all(o["doc"] for o in entry["options"]), [o["key"] for o in entry["options"] if not o["doc"]]
    for config in [HeadConfig] + [k.params_type for k in kinds().values()]:
        assert all(o["doc"] for o in options(config)), config
    assert run(["describe", "word2vec", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    epochs = next(o for o in out["options"] if o["key"] == "epochs")
    assert epochs["changes_id"] and next(o for o in out["options"] if o["key"] == "workers")["changes_id"] is False
    assert run(["describe"]) == 0
    listing = capsys.readouterr().out
    assert all(n in listing for n in list_extractors())
    # docs/extractors.md's and docs/heads.md's option tables are rendered from these same fields
    # (tests/test_readme.py checks they are current)


def test_labels_from_file_names_and_unlabelled_warning(store, tmp_path, caplog):
    from pipeline.extract import extract
    from pipeline.heads import train_head
    from pipeline.store import FeatureStore

    flat = tmp_path / "digits"
    flat.mkdir()
    wavs = [f for f in sorted(os.listdir(os.path.join(SAMPLE, "audio"))) if f.startswith(("tone", "chirp")) and f.endswith(".wav")]
    for i, f in enumerate(wavs):
        speaker = f"s{i % 6}"
        shutil.copy(os.path.join(SAMPLE, "audio", f), flat / f"{f.split('_')[0]}_{speaker}_{f.split('_')[1]}")
    with caplog.at_level("WARNING", logger="mmfeat"):
        plain = extract(str(flat), "audio", store=store, dataset="plain")
    assert "no item has a label" in caplog.text and plain["rows"] > 0
    with pytest.raises(MmfeatError, match="--label-from-name"):
        train_head([plain["feature_set"]], None, store)
    s = extract(str(flat), "audio", store=store, label_from_name=r"(?P<label>[a-z]+)_(?P<speaker>s\d)_")
    fs = FeatureStore(store).resolve(s["feature_set"])
    table = fs.table()
    assert set(table["label"].to_pylist()) == {"tone", "chirp"}
    assert {dict(m)["speaker"] for m in table["meta"].to_pylist()} == {f"s{i}" for i in range(6)}
    card = train_head([s["feature_set"]], {"group": "speaker"}, store, str(tmp_path / "h"))
    assert card["data"]["grouped_by"].startswith("speaker")
    speakers = dict(zip(table["id"].to_pylist(), (dict(m)["speaker"] for m in table["meta"].to_pylist())))
    from pipeline.heads.data import joined_table, load_head_data

    from pipeline.heads.config import HeadConfig

    data = load_head_data(joined_table([fs], "drop"), "label", HeadConfig(group="speaker"))
    per_split = [{speakers[i] for i in part.ids} for part in (data.train, data.val, data.test)]
    assert not (per_split[0] & per_split[1] or per_split[0] & per_split[2] or per_split[1] & per_split[2])
    caplog.clear()
    with caplog.at_level("WARNING", logger="mmfeat"):
        extract(str(flat), "audio", store=store)  # the same dataset, read without the pattern this time
    assert "with --label-from-name" in caplog.text and "labels are dropped" in caplog.text
    with pytest.raises(MmfeatError, match="matches none"):
        extract(str(flat), "audio", store=store, dataset="x", label_from_name=r"(?P<label>zzz)")


def test_dry_run_writes_nothing_and_limit_and_glob(store, tmp_path):
    from pipeline.cli import run
    from pipeline.dryrun import dry_run
    from pipeline.extract import JobSpec, extract

    texts = os.path.join(SAMPLE, "texts.jsonl")
    plan = dry_run(JobSpec(texts, "text", "bert", store=store))
    assert plan["items"] == 62 and plan["to_extract"] == 62 and plan["shards"] == 1 and not os.path.exists(store)
    assert run(["extract", texts, "--modality", "text", "--extractor", "word2vec", "--dry-run", "--store", store]) == 0
    small = extract(texts, "text", "word2vec", {"min_count": "1"}, store=store, limit=20, max_reject_fraction=1)
    assert small["feature_set"].startswith("texts-limit20/") and small["processed"] == 20
    bigger = extract(texts, "text", "word2vec", {"min_count": "1"}, store=store, limit=30, max_reject_fraction=1)
    from pipeline.store import FeatureStore

    a = set(FeatureStore(store).resolve(small["feature_set"]).ids().to_pylist())
    b = set(FeatureStore(store).resolve(bigger["feature_set"]).ids().to_pylist())
    assert a <= b  # a larger sample keeps the smaller one's items
    g = extract(os.path.join(SAMPLE, "images", "*", "*_0[0-4]*.png"), "image", store=store)
    assert g["feature_set"].startswith("images/") and g["processed"] == len(
        [f for d in ("circles", "squares", "stripes") for f in os.listdir(os.path.join(SAMPLE, "images", d))
         if f[-4:] == ".png" and f.split("_")[1][:1] == "0" and f.split("_")[1][1] in "01234"])


def test_macro_f1_counts_only_classes_present_and_the_interval():
    from pipeline.heads.metrics import classification_metrics, wilson_interval

    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), ["a", "b", "c"])
    assert m["classes_absent_from_test"] == ["c"]
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    lo, hi = m["accuracy_ci95"]
    assert lo < 0.75 < hi and (lo, hi) == pytest.approx(wilson_interval(3, 4))
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(50, 50)[0] > 0.9


def test_too_many_rejects_names_a_fix_that_works(tmp_path):
    from pipeline.extract import TooManyRejects, extract
    from pipeline.rejects import FIXES, reason

    assert all(reason(name) for name in FIXES)  # every fix belongs to a registered reason
    manifest = tmp_path / "m.csv"
    images = os.path.join(SAMPLE, "images", "circles")
    manifest.write_text("path,label\n" + "".join(f"{os.path.join(images, n)},c\n" for n in sorted(os.listdir(images))))
    store = str(tmp_path / "st")
    with pytest.raises(TooManyRejects, match="--allow-absolute-paths"):
        extract(str(manifest), "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"}, store=store)
    done = extract(str(manifest), "image", "cnn", {"model": "efficientnet_lite0", "image_size": "64"}, store=store,
                   allow_absolute=True)  # the hint, followed
    assert done["rejected"] == 0 and done["rows"] == len(os.listdir(images))
