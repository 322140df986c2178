"""Sparse features (tfidf): parity with scikit-learn, the sparse store column, and heads on sparse and
sparse + dense (fused) features."""
import json

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.errors import MmfeatError
from pipeline.extract import extract
from pipeline.extractors.text.common import tokenize_words
from pipeline.heads import predict, train_head
from pipeline.store import FeatureStore

TEXTS = "sample_data/texts.jsonl"


def _texts():
    with open(TEXTS) as f:
        rows = [json.loads(line) for line in f]
    return {r["id"]: r["text"] for r in rows}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sparse"))
    extract(TEXTS, "text", "tfidf", {}, store=root, progress=False)
    extract(TEXTS, "text", "tfidf", {"analyzer": "word+char"}, store=root, progress=False)
    return root


def test_tfidf_matches_scikit_learn_fitted_on_the_same_corpus(store):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = _texts()
    ids, x, _ = _word_set(store).numpy()
    assert sp.issparse(x) and x.dtype == np.float32
    ref = TfidfVectorizer(tokenizer=tokenize_words, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                          min_df=2, sublinear_tf=True).fit([texts[i] for i in ids])  # the corpus: usable texts
    assert len(ids) < len(texts)  # sample_data holds unusable texts too (rejected, not in the corpus)
    expected = ref.transform([texts[i] for i in ids])
    assert x.shape == expected.shape
    assert abs(x - expected).max() < 1e-6  # same vocabulary order, idf and L2 norm, float32 rounding only
    np.testing.assert_allclose(sp.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def _word_set(store):
    st = FeatureStore(store)
    return next(fs for fs in st.feature_sets() if fs.manifest["extractor"] == "tfidf" and fs.manifest["config"]["analyzer"] == "word")


def test_sparse_column_is_readable_from_duckdb_and_as_tensors(store):
    fs = _word_set(store)
    assert fs.sparse and fs.schema().field("features").type.num_fields == 2
    ids, x, _ = fs.numpy()
    n_nonzero = duckdb.sql(f"SELECT id, len(features.indices) n, list_sum(features['values']) s "
                           f"FROM read_parquet('{fs.path}/part-*.parquet') ORDER BY id").fetchall()
    assert [r[0] for r in n_nonzero] == list(ids)
    assert [r[1] for r in n_nonzero] == list(np.diff(x.indptr))
    np.testing.assert_allclose([r[2] for r in n_nonzero], np.asarray(x.sum(1)).ravel(), rtol=1e-5)
    dense = fs.torch()[1].to_dense().numpy()
    np.testing.assert_array_equal(dense, x.toarray())


def test_word_and_char_blocks_are_balanced(store):
    fs = next(f for f in FeatureStore(store).feature_sets() if f.manifest["config"].get("analyzer") == "word+char")
    _, x, _ = fs.numpy()
    np.testing.assert_allclose(sp.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert fs.dim > _word_set(store).dim


def test_heads_train_on_sparse_and_fused_features_and_predict(store, tmp_path):
    extract(TEXTS, "text", "word2vec", {}, store=store, progress=False)
    tfidf = f"texts/tfidf-{_word_set(store).config_id[:12]}"
    for sets in ([tfidf], [tfidf, "texts/word2vec"]):
        card = train_head(sets, {"val_fraction": "0.2"}, store, str(tmp_path / "-".join(s[-5:] for s in sets)))
        assert card["solver"] == "lbfgs" and card["l2_penalties"][0] == 1e-6  # weaker penalties for sparse rows
        assert card["metrics"]["accuracy"] > card["metrics"]["majority_baseline_accuracy"]
        blocks = card["data"]["blocks"]
        assert [b["sparse"] for b in blocks] == [True] + [False] * (len(sets) - 1)
        std = np.asarray(card["standardization"]["std"])
        assert np.all(std[:blocks[0]["dim"]] == 1.0) and np.all(std[blocks[0]["dim"]:] != 1.0)
        out = predict(card["head_dir"], sets, store)
        assert out["rows"] == 60 and out["accuracy"] > 0.8  # the 60 usable texts of 62
    # raw texts in one call: extracted with the vocabularies fitted on the training dataset (fit_on)
    from pipeline.heads import predict_source

    incoming = tmp_path / "incoming.jsonl"
    rows = [dict(json.loads(line), id=f"new-{i}") for i, line in enumerate(open(TEXTS)) if i % 10 == 0]
    incoming.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = predict_source(card["head_dir"], str(incoming), store)
    assert [s.split("/")[0] for s in out["feature_sets"]] == ["incoming", "incoming"]
    assert [FeatureStore(store).resolve(s).config_id for s in out["feature_sets"]] == \
        [s["config_id"] for s in card["feature_sets"]]
    assert out["rows"] == len(rows) - sum(1 for r in rows if not r["text"].strip()) and out["accuracy"] > 0.8


def test_dense_only_heads_refuse_sparse_features_in_one_line(store, tmp_path):
    tfidf = f"texts/tfidf-{_word_set(store).config_id[:12]}"
    with pytest.raises(MmfeatError, match="sparse features .* lbfgs"):
        train_head([tfidf], {"head": "mlp"}, store, str(tmp_path / "mlp"))


def test_fused_blocks_weigh_alike_after_standardization():
    from pipeline.heads.design import scaled, standardization

    rng = np.random.default_rng(0)
    words = sp.random(500, 2000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    words = sp.csr_matrix(words.multiply(1 / np.maximum(sp.linalg.norm(words, axis=1), 1e-9)[:, None]))
    dense = rng.normal(3.0, 5.0, (500, 64)).astype(np.float32)
    x = sp.hstack([words, sp.csr_matrix(dense)], format="csr")
    mean, std = standardization(x, [{"dim": 2000, "sparse": True}, {"dim": 64, "sparse": False}])
    z = scaled(x, mean, std)
    assert sp.issparse(z) and not mean.any()  # nothing centered: the sparse block stays sparse
    sparse_norm = np.mean(sp.linalg.norm(z[:, :2000], axis=1) ** 2)
    dense_var = np.mean(np.sum((z[:, 2000:].toarray() - z[:, 2000:].toarray().mean(0)) ** 2, axis=1))
    assert abs(sparse_norm - 1) < 0.05 and abs(dense_var - 1) < 1e-3  # each block's rows weigh about 1


def test_two_runs_fitting_the_same_state_at_once_both_succeed(tmp_path):
    """Both write the state under their own staging name and rename it into place (a shared '.tmp'
    name made the slower run fail with FileNotFoundError)."""
    import threading

    from pipeline.registry import Corpus, create_extractor

    texts = [t for t in _texts().values() if t.strip()] * 20
    folder = str(tmp_path / "state")
    extractors = [create_extractor("tfidf") for _ in range(4)]
    errors = []

    def fit(ext):
        try:
            ext.fit_corpus(Corpus(texts, "text"), folder)
        except Exception as exc:  # noqa: BLE001  (collected, asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(e,)) for e in extractors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({e.weights_sha256 for e in extractors}) == 1
