"""``tfidf``: sparse TF-IDF of word and/or character n-grams, fitted on the dataset's corpus.

The vocabulary and idf weights are fitted state (saved beside the dataset like Word2Vec's vectors, and
shared with ``--fit-on``). Rows are stored sparse: the nonzero columns and their values.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from ...config import check_choice, option, sha256_file
from ...errors import MmfeatError
from ...store import files
from ...registry import register_extractor
from ..batching import MapExtractor
from .common import read_text, tokenize_words
from .word2vec_state import corpus

ANALYZERS = ("word", "char", "word+char")


@dataclasses.dataclass(frozen=True)
class TfidfConfig:
    """TF-IDF text features (scikit-learn's TfidfVectorizer, fitted on the dataset's texts).

    ``analyzer``: ``word`` n-grams (the Word2Vec tokenization: NFKC, casefold, letters/digits),
    ``char`` n-grams inside word boundaries, or ``word+char`` (both, each block L2-normalized, scaled
    so a row's norm is 1). ``min_df``: a term must occur in this many texts; ``max_df``: in at most
    this fraction; ``max_features``: the most frequent terms kept per analyzer; ``sublinear_tf``:
    1 + log(tf) instead of raw counts.
    """

    analyzer: str = option("word", "word (n-grams of words), char (n-grams of characters inside words), or word+char")
    word_ngrams: tuple[int, int] = option((1, 2), "low,high: word n-gram lengths (1,2: words and pairs of words)")
    char_ngrams: tuple[int, int] = option((2, 5), "low,high: character n-gram lengths for char and word+char")
    min_df: int = option(2, "a term must occur in at least this many texts of the corpus")
    max_df: float = option(1.0, "terms in more than this fraction of the texts are dropped (1.0 keeps all)")
    max_features: int = option(
        200_000, "the most frequent terms kept, per analyzer (the width of the sparse vectors)")
    sublinear_tf: bool = option(True, "1 + log(count) instead of the raw count of a term in a text")
    max_chars: int = option(1_000_000, "longer texts are rejected (too_long)")

    def __post_init__(self):
        check_choice("analyzer", self.analyzer, ANALYZERS)
        for name in ("word_ngrams", "char_ngrams"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1] <= 8:
                raise ValueError(f"{name} must be two integers 1 <= low <= high <= 8, e.g. 1,2")
        if self.min_df < 1 or self.max_features < 1 or self.max_chars < 1:
            raise ValueError("min_df, max_features and max_chars must be >= 1")
        if not 0 < self.max_df <= 1:
            raise ValueError("max_df must be in (0, 1]")


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
