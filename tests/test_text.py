import numpy as np
import pytest
import torch

from pipeline.errors import MmfeatError
from pipeline.extractors.text.bert import BertConfig, BertExtractor
from pipeline.registry import ItemBatch, create_extractor

SENTENCES = ["The cat sat on the mat.", "A kitten is resting on a rug.", "Interest rates rose again this quarter.",
             "Central banks raised borrowing costs.", "I like green apples and pears, a lot more than you'd think."]


@pytest.fixture(scope="module")
def minilm():
    return BertExtractor(BertConfig())


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("auto", 1e-3)])
def test_pooled_embeddings_match_a_plain_reference(minilm, precision, tolerance):
    # auto is bf16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16): measured >= 0.99997 there
    ext = BertExtractor(BertConfig(precision=precision))
    ours = ext.extract(ItemBatch([str(i) for i in range(5)], SENTENCES, "text")).features
    enc = minilm.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = ((hidden * m).sum(1) / m.sum(1)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (ours * ref).sum(1)
    assert np.all(cos > 1 - tolerance), (ext.dtype, cos)
    sim = ours @ ours.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 0] and sim[2, 3] > sim[1, 3]


def test_mpnet_reassembles_from_its_part_packages_and_embeds_by_meaning(tmp_path, monkeypatch):
    monkeypatch.setenv("MMFEAT_CACHE", str(tmp_path))  # unpacked afresh from the five installed parts
    ext = BertExtractor(BertConfig(model="all-mpnet-base-v2"))
    assert ext.dim == 768 and ext.max_length == 384 and ext.model_dir.startswith(str(tmp_path))
    f = ext.extract(ItemBatch([str(i) for i in range(5)], SENTENCES, "text")).features
    sim = f @ f.T
    assert sim[0, 1] > 0.5 > sim[0, 2] and sim[2, 3] > 0.5 > sim[1, 3]
    assert BertExtractor(BertConfig(model="all-mpnet-base-v2")).model_dir == ext.model_dir  # unpacked once


def test_long_texts_are_windowed_and_bad_texts_rejected(minilm):
    long = " ".join(["economy growth inflation markets"] * 400)  # ~1600 words, far past 256 tokens
    texts = [long, "", "  \n ", None, "x" * 2_000_001, "short text"]
    r = minilm.extract(ItemBatch([str(i) for i in range(len(texts))], texts, "text"))
    assert list(r.ok) == [0, 5]
    assert [x.reason for x in r.rejects] == ["empty_text", "empty_text", "null_text", "too_long"]
    windows, owner = minilm.windows([long])
    assert len(windows) > 5 and max(len(w) for w in windows) <= minilm.max_length
    truncated = BertExtractor(BertConfig(long_texts="truncate"))
    assert len(truncated.windows([long])[0]) == 1


def test_invalid_utf8_file_is_rejected(minilm, tmp_path):
    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_text("plain text")
    bad.write_bytes(b"caf\xe9 au lait")
    r = minilm.extract(ItemBatch(["a", "b"], [str(good), str(bad)], "path"))
    assert list(r.ok) == [0] and r.rejects[0].reason == "invalid_utf8"


def test_pooling_options_and_model_dir(minilm):
    for pooling in ("cls", "max"):
        e = BertExtractor(BertConfig(model=minilm.model_dir, pooling=pooling, normalize=False))
        f = e.extract(ItemBatch(["a"], ["hello world"], "text")).features
        assert f.shape == (1, 384) and e.weights_sha256 == minilm.weights_sha256
    with pytest.raises(MmfeatError, match="not in the local Hugging Face cache"):
        BertExtractor(BertConfig(model="nobody/nothing"))


def test_word2vec_trains_pools_and_saves_its_vectors(tmp_path, store):
    import json

    from pipeline.extract import extract
    from pipeline.store import FeatureStore

    manifest = tmp_path / "m.jsonl"
    rows = [{"id": str(i), "text": t, "label": "x"} for i, t in enumerate(
        ["the cat sat", "the dog ran", "a cat and a dog", "zzz qqq", "Cats, dogs; and THE cat!"] * 4)]
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    for pooling in ("mean", "tfidf", "sif"):
        s = extract(str(manifest), "text", "word2vec", {"pooling": pooling, "min_count": "2", "vector_size": "16"},
                    store=store)
        assert s["rows"] == 20  # "zzz qqq" occurs 4 times: it is in the vocabulary
        again = extract(str(manifest), "text", "word2vec", {"pooling": pooling, "min_count": "2", "vector_size": "16"},
                        store=store)
        assert again["feature_set"] == s["feature_set"]  # saved vectors reused: same weights hash
    fs = FeatureStore(store).resolve(s["feature_set"])
    assert fs.manifest["weights_sha256"] and fs.dim == 16


def test_word2vec_no_known_word_and_pinned_pickles(tmp_path):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["cat", "dog"], np.eye(2, 4, dtype=np.float32))
    txt, pickle = tmp_path / "v.txt", tmp_path / "v.kv"
    kv.save_word2vec_format(str(txt))
    kv.save(str(pickle))
    e = create_extractor("word2vec", {"vectors": str(txt)})
    r = e.extract(ItemBatch(["a", "b"], ["Cat and DOG", "nothing known"], "text"))
    np.testing.assert_allclose(r.features[0], [0.5, 0.5, 0, 0], atol=1e-6)
    assert r.rejects[0].reason == "no_known_words"
    with pytest.raises(MmfeatError, match="pickle.*sha256 is [0-9a-f]{64}"):
        create_extractor("word2vec", {"vectors": str(pickle)})
    from pipeline.config import sha256_file

    pinned = create_extractor("word2vec", {"vectors": str(pickle), "vectors_sha256": sha256_file(str(pickle))})
    assert pinned.dim == 4


def test_word2vec_epochs_follow_the_corpus_size(store):
    import os

    from conftest import SAMPLE
    from pipeline.extract import extract
    from pipeline.extractors.text.word2vec_state import auto_epochs
    from pipeline.store import FeatureStore

    assert auto_epochs(60_000) == 100 and auto_epochs(800_000) == 38 and auto_epochs(50_000_000) == 5
    s = extract(os.path.join(SAMPLE, "texts.jsonl"), "text", "word2vec", {"min_count": "1"}, store=store)
    training = FeatureStore(store).resolve(s["feature_set"]).manifest["runtime"]["training"]
    assert training["epochs"] == auto_epochs(training["corpus_words"]) == 100


def test_token_states_are_stored_as_frames_for_sequence_heads(tmp_path):
    from pipeline.extract import extract
    from pipeline.heads import train_head
    from pipeline.store import FeatureStore

    root = str(tmp_path / "st")
    s = extract("sample_data/texts.jsonl", "text", "bert", {"frames": "true"}, store=root, progress=False)
    fs = FeatureStore(root).resolve(s["feature_set"])
    t = fs.table(columns=["id", "features", "frames"])
    plain = BertExtractor(BertConfig())
    text = "And was goal season referee in striker the referee final match"
    tokens = plain.tokenizer(text)["input_ids"]
    ext = BertExtractor(BertConfig(frames=True))
    r = ext.extract(ItemBatch(["a"], [text], "text"))
    assert r.sequences[0].shape == (len(tokens), 384)  # every token, [CLS] and [SEP] included
    np.testing.assert_allclose(r.features, plain.extract(ItemBatch(["a"], [text], "text")).features, atol=1e-6)
    assert fs.manifest["frame_dim"] == 384 and len(t["frames"][0]) > 2
    card = train_head([s["feature_set"]], {"head": "sequence", "max_epochs": "15"}, root, str(tmp_path / "seq"))
    assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
    with pytest.raises(MmfeatError, match="over memory_gb"):
        train_head([s["feature_set"]], {"head": "sequence", "memory_gb": "0.0001"}, root, str(tmp_path / "big"))


def test_a_config_field_added_at_its_default_keeps_stored_set_ids():
    """frames and frames_layer came after sets were stored: at their defaults they stay out of the id, so
    those sets are still current (a changed id would re-extract every user's texts without a word)."""
    from pipeline.config import identity
    from pipeline.extractors.text.bert import BertConfig
    from pipeline.registry import create_extractor

    assert "frames" not in identity(BertConfig()) and "frames_layer" not in identity(BertConfig())
    assert identity(BertConfig(frames=True, frames_layer=2))["frames_layer"] == 2
    # the default bert set's id as stored before either existed (commit b9f7eed; MiniLM's pinned weights)
    assert create_extractor("bert").config_id == "93df340a20bac1ed18bafe7a5f85e2f7ab542572d88166fdb95b6161f1a458ea"
    with pytest.raises(ValueError, match="frames_layer"):
        BertConfig(frames_layer=2)
