"""``tfidf``: sparse TF-IDF of word and/or character n-grams, fitted on the dataset's corpus.

The vocabulary and idf weights are fitted state (saved beside the dataset like Word2Vec's vectors, and
shared with ``--fit-on``). Rows are stored sparse: the nonzero columns and their values.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ...config import sha256_file
from ...errors import MmfeatError
from ...store import files
from ...registry import register_extractor
from ..batching import MapExtractor
from .common import read_text, tokenize_words
from .config import TfidfConfig
from .word2vec_state import corpus

STATE_FILE = "tfidf.parquet"  # analyzer, term, idf: one row per column, in column order


def _vectorizer(config: TfidfConfig, analyzer: str, vocabulary: dict[str, int] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = dict(min_df=config.min_df, max_df=config.max_df, max_features=config.max_features,
                  sublinear_tf=config.sublinear_tf, dtype=np.float32, vocabulary=vocabulary)
    if analyzer == "word":
        return TfidfVectorizer(tokenizer=tokenize_words, lowercase=False, token_pattern=None,
                               ngram_range=tuple(config.word_ngrams), **common)
    return TfidfVectorizer(analyzer="char_wb", lowercase=True, ngram_range=tuple(config.char_ngrams), **common)


@register_extractor
class TfidfExtractor(MapExtractor):
    name = "tfidf"
    modality = "text"
    config_type = TfidfConfig
    version = TfidfConfig.extractor_version
    corpus_fitted = True
    sparse = True
    chunk_size = 1024

    def __init__(self, config: TfidfConfig):
        super().__init__(config)
        self.vectorizers: list = []
        self._digest: str | None = None
        self._state_dir: str | None = None

    @property
    def analyzers(self) -> list[str]:
        return self.config.analyzer.split("+")

    def fit_corpus(self, items, state_dir: str) -> None:
        """Fit the vocabulary and idf on the corpus (or load what ``state_dir`` holds)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._state_dir == state_dir:
            return
        path = os.path.join(state_dir, STATE_FILE)
        if not os.path.exists(path):
            if items is None:
                raise MmfeatError(f"no fitted tfidf state in {state_dir}: extract the dataset it is fitted on "
                                  "first (with the same config)")
            texts = corpus(items, self.config.max_chars)
            names, terms, idfs = [], [], []
            for analyzer in self.analyzers:
                try:
                    vec = _vectorizer(self.config, analyzer).fit(texts)
                except ValueError as exc:  # scikit-learn: empty vocabulary, or nothing left after min_df
                    raise MmfeatError(f"tfidf ({analyzer}) learned no terms from the corpus: {exc}; lower "
                                      "min_df or extract more texts") from None
                vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
                names += [analyzer] * len(vocab)
                terms += vocab
                idfs.append(vec.idf_)
            # A unique staging name, renamed into place: two runs fitting the same state at once both
            # succeed (the same corpus and config give the same vocabulary; the last rename wins).
            files.write_parquet_atomic(files.LOCAL, path, pa.table({"analyzer": names, "term": terms,
                                                                    "idf": np.concatenate(idfs)}))
        table = pq.read_table(path)
        analyzer, term, idf = (table[c].to_numpy(zero_copy_only=False) for c in ("analyzer", "term", "idf"))
        self.vectorizers = []
        for name in self.analyzers:
            mask = analyzer == name
            vec = _vectorizer(self.config, name, {t: i for i, t in enumerate(term[mask])})
            vec.idf_ = idf[mask]
            self.vectorizers.append(vec)
        self._digest, self._state_dir = sha256_file(path), state_dir

    @property
    def dim(self) -> int:
        if not self.vectorizers:
            raise MmfeatError("tfidf is not fitted yet: run fit_corpus() first")
        return sum(len(v.vocabulary) for v in self.vectorizers)

    @property
    def weights_sha256(self) -> str | None:
        if self._digest is None:
            raise MmfeatError("tfidf is not fitted yet: run fit_corpus() first")
        return self._digest

    def decoder(self, kind: str):
        return functools.partial(read_text, kind=kind, max_chars=self.config.max_chars)

    def embed(self, texts: list[str]):
        """CSR rows; a text with no known term is a row of zeros (a valid, if uninformative, input)."""
        import scipy.sparse as sp

        blocks = [v.transform(texts) for v in self.vectorizers]
        x = blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csr") / np.sqrt(len(blocks))
        return sp.csr_matrix(x, dtype=np.float32)
