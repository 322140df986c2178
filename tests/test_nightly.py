"""The nightly loop a team can trust: a failed run loses nothing, a damaged part stops nothing, splits stay
put, heads pin what they trained on, and mmfeat leaves the user's thread settings alone."""
import json
import os
import random

import pyarrow.parquet as pq
import pytest
import torch

from helpers import write_text_manifest
from pipeline.cli import run
from pipeline.errors import MmfeatError
from pipeline.extract import TooManyRejects, extract
from pipeline.heads import list_heads, predict, train_head
from pipeline.store import FeatureStore


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def _write(path: str, rows: list[dict]) -> str:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_a_failed_run_publishes_nothing_and_its_changes_wait_for_the_next(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 40)
    extract(manifest, "text", "test-hash", store=store, dataset="news")
    rows = _rows(manifest)
    for r in rows[:10]:
        r["label"] = "edited"
    bad = rows + [{"id": f"bad{i}", "text": "", "label": "a"} for i in range(6)]
    with pytest.raises(TooManyRejects, match="nothing was published"):
        extract(_write(manifest, bad), "text", "test-hash", store=store, dataset="news", max_reject_fraction=0.1)
    items = FeatureStore(store).dataset("news")
    assert "edited" not in items.current()["label"].to_pylist() and len(items.log()) == 1  # yesterday's view
    night2 = extract(_write(manifest, rows + [{"id": "bad0", "text": "", "label": "a"}]), "text", "test-hash",
                     store=store, dataset="news")
    # the edits the failed run saw are reported (and trigger) now; one bad file in many does not fail a night
    assert night2["changes"]["metadata_changed"] == 10 and night2["changes"]["added"] == 1
    assert night2["rejected"] == 1 and night2["rows"] == 40
    log = items.log()
    assert len(log) == 2 and log[0]["previous_run"] == log[1]["run"]
    changed = items.changes(log[0]["run"]).to_pylist()
    assert {(c["id"], c["change"]) for c in changed if c["change"] == "label_changed"} == \
        {(r["id"], "label_changed") for r in rows[:10]}
    assert run(["log", "news", "--store", store]) == 0


def test_a_wrong_modality_still_fails_at_once(store, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text("not a picture")
    with pytest.raises(TooManyRejects, match="3 of 3"):
        extract(str(folder), "image", store=store)


def test_a_damaged_part_stops_no_command(store, tmp_path, capsys, caplog):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 60)
    s = extract(manifest, "text", "test-hash", store=store, shard_size=20)
    assert run(["train-head", s["feature_set"], "--store", store, "--out", str(tmp_path / "h")]) == 0
    fs = FeatureStore(store).resolve(s["feature_set"])
    victim = fs.files()[0]
    with open(victim, "r+b") as f:
        f.truncate(1000)
    capsys.readouterr()
    assert run(["ls", "--store", store, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["rows"] == 40 and os.path.basename(victim) in listed[0]["skipped_shards"][0]["why"]
    assert run(["predict", str(tmp_path / "h"), s["feature_set"], "--store", store]) == 0
    assert run(["train-head", s["feature_set"], "--store", store, "--out", str(tmp_path / "h2")]) == 0
    assert os.path.basename(victim) in caplog.text  # named (on stderr through the CLI's log handler)
    lost = train_head([s["feature_set"]], None, store, str(tmp_path / "h3"), as_of=str(tmp_path / "h"))
    assert lost["data"]["pinned_rows_lost"] == 20  # the retrain says it is not the run's exact data
    again = extract(manifest, "text", "test-hash", store=store, shard_size=20)
    assert again["processed"] == 20 and again["rows"] == 60 and again["dropped_shards"]


def test_grouped_splits_ignore_row_order_and_leave_no_split_empty(store, tmp_path):
    rows = [{"id": f"s{s}-{i}", "text": f"speaker {s} says {i} " + "x" * (i % 5), "label": str(i % 3), "speaker": f"s{s}"}
            for s in range(6) for i in range(12)]
    splits = []
    for seed in (0, 1):
        random.Random(seed).shuffle(rows)
        dataset = f"order{seed}"
        s = extract(_write(str(tmp_path / f"{dataset}.jsonl"), rows), "text", "test-hash", store=store, dataset=dataset)
        card = train_head([s["feature_set"]], {"group": "speaker"}, store, str(tmp_path / dataset))
        assert min(card["data"]["sizes"].values()) > 0
        snap = pq.read_table(os.path.join(card["path"], "items.parquet")).to_pylist()
        splits.append(sorted((r["id"].split("-")[0], r["split"]) for r in snap))
    assert splits[0] == splits[1] and all(len({sp for sk, sp in splits[0] if sk == k}) == 1 for k, _ in splits[0])


def test_the_test_split_stays_put_when_items_are_added(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 100)
    rows = [dict(r, split=None) for r in _rows(manifest)]
    s = extract(_write(manifest, rows), "text", "test-hash", store=store, dataset="night")
    first = train_head([s["feature_set"]], None, store, str(tmp_path / "h"))
    tests = lambda card: {r["id"] for r in pq.read_table(os.path.join(card["path"], "items.parquet")).to_pylist()  # noqa: E731
                          if r["split"] == "test"}
    more = rows + [{"id": f"n{i}", "text": f"a new text {i} " * (1 + i % 3), "label": "ab"[i % 2]} for i in range(20)]
    s = extract(_write(manifest, more), "text", "test-hash", store=store, dataset="night")
    second = train_head([s["feature_set"]], None, store, str(tmp_path / "h"))
    assert tests(first) <= tests(second) and len(tests(second)) > len(tests(first))
    out = predict(str(tmp_path / "h"), s["feature_set"], store)
    assert out["labelled_test"] == second["metrics"]["n_test"] and "accuracy_trained_on" in out
    assert out["accuracy_test"] == pytest.approx(second["metrics"]["accuracy"])


def test_heads_pin_their_rows_through_gc_and_retrain_as_of(store, tmp_path):
    manifest = write_text_manifest(str(tmp_path / "m.jsonl"), 80)
    s = extract(manifest, "text", "test-hash", store=store, dataset="pin")
    card = train_head([s["feature_set"]], None, store)  # in the store's _heads
    rows = _rows(manifest)
    for r in rows[:5]:
        r["text"] += " edited"  # the head keeps the old texts' rows; the view gets the new ones
    extract(_write(manifest, rows[:50]), "text", "test-hash", store=store, dataset="pin")  # 30 items leave
    dry = json.loads(_cli(["gc", "--dry-run", "--json", "--store", store]))
    real = json.loads(_cli(["gc", "--json", "--store", store]))
    assert dry == real and real["rows_pinned"] == 35 and real["rows_dropped"] == 0
    again = train_head([s["feature_set"]], None, store, str(tmp_path / "again"), as_of=card["path"])
    assert again["metrics"]["accuracy"] == pytest.approx(card["metrics"]["accuracy"])
    assert again["metrics"]["confusion_matrix"] == card["metrics"]["confusion_matrix"]
    name = os.path.basename(card["head_dir"])
    assert "would remove" in _cli(["rm", f"head:{name}", "--dry-run", "--store", store])
    assert os.path.isdir(card["head_dir"])
    assert _cli(["rm", f"head:{name}", "--store", store]) and not os.path.exists(card["head_dir"])
    assert _cli(["rm", "head:again", "--store", store])  # the --out head's registration; its folder stays
    assert os.path.isdir(tmp_path / "again")
    assert json.loads(_cli(["gc", "--json", "--store", store]))["rows_dropped"] == 35  # pins released


def _cli(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(argv) == 0
    return out.getvalue()


def test_heads_written_elsewhere_are_listed(store, tmp_path):
    s = extract(write_text_manifest(str(tmp_path / "m.jsonl"), 40), "text", "test-hash", store=store)
    train_head([s["feature_set"]], None, store, str(tmp_path / "mine"))
    assert [h["name"] for h in list_heads(store)] == ["mine"]
    assert list_heads(store)[0]["location"] == str(tmp_path / "mine")


def test_the_users_thread_setting_stands(store, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        s = extract(os.path.join("sample_data", "audio", "manifest.csv"), "audio", store=store)
        train_head([s["feature_set"]], {"head": "mlp", "max_epochs": "2"}, store, str(tmp_path / "h"))
        assert torch.get_num_threads() == 1
        extract(os.path.join("sample_data", "audio", "manifest.csv"), "audio", "spectral", {"threads": "2"},
                store=store, dataset="two")
        assert torch.get_num_threads() == 2  # asked for
    finally:
        torch.set_num_threads(before)
    with pytest.raises(MmfeatError, match="threads"):
        train_head([s["feature_set"]], {"threads": "0"}, store)
