"""``word2vec``: pooled Word2Vec vectors, trained on the dataset's corpus or loaded from a file."""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os

import numpy as np

from ...config import sha256_file
from ...errors import BadInput, MmfeatError
from ...registry import register_extractor
from ..batching import MapExtractor
from .common import read_text, tokenize_words
from .config import Word2VecConfig
from .word2vec_state import CorpusStats, corpus, load_vectors, save_state, train


@register_extractor
class Word2VecExtractor(MapExtractor):
    name = "word2vec"
    modality = "text"
    config_type = Word2VecConfig
    version = Word2VecConfig.extractor_version
    corpus_fitted = True
    chunk_size = 4096

    def __init__(self, config: Word2VecConfig):
        super().__init__(config)
        self.vectors: np.ndarray | None = None
        self.index: dict[str, int] = {}
        self.stats: CorpusStats | None = None
        self._weights_sha: str | None = None
        self._state_dir: str | None = None  # the fitted state loaded now (one instance serves many datasets)
        self._preloaded = bool(config.vectors and config.pooling == "mean")
        if self._preloaded:
            self._use(*load_vectors(config.vectors, config.vectors_sha256), None, sha256_file(config.vectors))

    def describe(self) -> dict:
        """The training the fitted state came from (corpus words, epochs used), for provenance."""
        return {"training": self.stats.training} if self.stats is not None and self.stats.training else {}

    def _use(self, vectors, words, stats, digest) -> None:
        self.vectors = vectors.astype(np.float32)
        self.index = {w: i for i, w in enumerate(words)}
        self.stats, self._weights_sha = stats, digest

    def fit_corpus(self, items, state_dir: str) -> None:
        """Train (or reuse the vectors saved in ``state_dir``) before extraction."""
        if self._preloaded or self._state_dir == state_dir:
            return
        vec_path, stats_path = os.path.join(state_dir, "vectors.bin"), os.path.join(state_dir, "stats.json")
        if not os.path.exists(stats_path):
            if items is None:
                raise MmfeatError(f"no fitted word2vec state in {state_dir}: extract the dataset it is fitted "
                                  "on first (with the same config)")
            texts = corpus(items, self.config.max_chars)
            if self.config.vectors:
                vectors, words = load_vectors(self.config.vectors, self.config.vectors_sha256)
            else:
                vectors, words, facts = train(texts, self.config)
            stats = CorpusStats.count(texts, {w: i for i, w in enumerate(words)}, len(words))
            stats.training = facts if not self.config.vectors else None
            self._use(vectors, words, stats, None)
            if self.config.pooling == "sif":
                stats.sif_component = self._common_component(texts)
            save_state(state_dir, vectors, words, stats)
        vectors, words = load_vectors(vec_path, None, trusted_format="word2vec_binary")
        with open(stats_path) as f:
            stats = CorpusStats.from_json(json.load(f))
        digest = hashlib.sha256((sha256_file(vec_path) + sha256_file(stats_path)).encode()).hexdigest()
        self._use(vectors, words, stats, digest)
        self._state_dir = state_dir

    def _common_component(self, texts) -> list[float]:
        gram = np.zeros((self.config.vector_size,) * 2)
        chunk: list[str] = []
        for text in itertools.chain(texts, [None]):
            if text is not None:
                chunk.append(text)
            if chunk and (text is None or len(chunk) == 4096):
                x = self._pool(chunk, remove_component=False)[0]
                gram += x.T.astype(np.float64) @ x
                chunk = []
        return np.linalg.eigh(gram)[1][:, -1].tolist()

    @property
    def dim(self) -> int:
        return self.vectors.shape[1] if self.vectors is not None else self.config.vector_size

    @property
    def weights_sha256(self) -> str | None:
        if self._weights_sha is None:
            raise MmfeatError("word2vec vectors are not trained yet: run fit_corpus() first")
        return self._weights_sha

    def _weights(self, idx: np.ndarray) -> np.ndarray:
        if self.config.pooling == "tfidf":
            return self.stats.idf()[idx]
        if self.config.pooling == "sif":
            return self.config.sif_a / (self.config.sif_a + self.stats.probability()[idx])
        return np.ones(len(idx))

    def _pool(self, texts: list[str], remove_component: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(features of texts with at least one known word, mask of those texts)."""
        from scipy.sparse import csr_matrix

        rows, cols = [], []
        for r, text in enumerate(texts):
            known = [self.index[w] for w in tokenize_words(text) if w in self.index]
            rows.extend([r] * len(known))
            cols.extend(known)
        cols_a = np.array(cols, dtype=np.int64)
        weights = csr_matrix((self._weights(cols_a), (np.array(rows, dtype=np.int64), cols_a)),
                             shape=(len(texts), len(self.vectors)))
        totals = np.asarray(weights.sum(axis=1)).ravel()
        has_words = np.asarray((weights > 0).sum(axis=1)).ravel() > 0
        x = (weights[has_words] @ self.vectors) / totals[has_words, None]
        if remove_component and self.config.pooling == "sif" and self.stats.sif_component:
            u = np.asarray(self.stats.sif_component, dtype=np.float64)
            x = x - np.outer(x @ u, u)
        return np.asarray(x, dtype=np.float32), has_words

    def decoder(self, kind: str):
        return functools.partial(read_text, kind=kind, max_chars=self.config.max_chars)

    def embed(self, texts: list[str]) -> tuple[np.ndarray, dict[int, BadInput]]:
        features, has_words = self._pool(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        out[has_words] = features
        unknown = BadInput("no_known_words", "no word of the text is in the vocabulary", "validate")
        return out, {int(i): unknown for i in np.flatnonzero(~has_words)}
