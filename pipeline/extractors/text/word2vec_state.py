"""Word2Vec training, safe vector loading, and corpus statistics saved with a feature set."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np

from ...config import sha256_file
from ...errors import MmfeatError
from ...registry import ItemBatch
from .common import load_texts, tokenize_words


class corpus:
    """A restartable iterable over the usable texts of a :class:`~pipeline.registry.Corpus`, read in
    chunks (never all at once)."""

    def __init__(self, items, max_chars: int, chunk: int = 4096):
        self.items, self.max_chars, self.chunk = items, max_chars, chunk

    def __iter__(self):
        inputs = self.items.inputs
        for start in range(0, len(inputs), self.chunk):
            sources = inputs[start:start + self.chunk]
            yield from load_texts(ItemBatch([""] * len(sources), sources, self.items.kind), self.max_chars)[1]


class _Sentences:
    def __init__(self, texts):
        self.texts = texts

    def __iter__(self):
        return (tokenize_words(t) for t in self.texts)


def train(texts, config) -> tuple[np.ndarray, list[str]]:
    from gensim.models import Word2Vec

    model = Word2Vec(sentences=_Sentences(texts), vector_size=config.vector_size, window=config.window,
                     min_count=config.min_count, workers=config.workers, epochs=config.epochs,
                     sg=config.sg, seed=config.seed)
    if not len(model.wv):
        raise MmfeatError(f"word2vec: no word occurs min_count={config.min_count} times in the corpus")
    return model.wv.vectors, list(model.wv.index_to_key)


def load_vectors(path: str, pinned_sha256: str | None, trusted_format: str | None = None):
    """Vectors from word2vec text/binary format; gensim pickles only with a matching pinned sha256."""
    from gensim.models import KeyedVectors, Word2Vec

    if not os.path.isfile(path):
        raise MmfeatError(f"vectors file not found: {path}")
    lower = path.lower()
    if lower.endswith((".model", ".kv", ".pkl", ".pickle")):
        actual = sha256_file(path)
        if pinned_sha256 is None or actual != pinned_sha256.lower():
            raise MmfeatError(f"{path} is a gensim pickle and pickles run code when loaded: pin its hash with "
                              f"--set vectors_sha256=<sha256> (this file's sha256 is {actual}) or use word2vec format")
        obj = Word2Vec.load(path) if lower.endswith(".model") else KeyedVectors.load(path)
        kv = obj.wv if hasattr(obj, "wv") else obj
    else:
        binary = trusted_format == "word2vec_binary" or lower.endswith(".bin")
        try:
            kv = KeyedVectors.load_word2vec_format(path, binary=binary)
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:  # OSError: a .gz that is not gzip
            raise MmfeatError(f"{path}: not a word2vec {'binary' if binary else 'text'} file "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return np.asarray(kv.vectors, dtype=np.float32), list(kv.index_to_key)


@dataclasses.dataclass
class CorpusStats:
    """Word counts and document frequencies over the training corpus (for tfidf and sif pooling)."""

    counts: list[int]
    doc_freq: list[int]
    n_docs: int
    sif_component: list[float] | None = None

    @classmethod
    def count(cls, texts, index: dict[str, int], size: int) -> "CorpusStats":
        counts, df, n = np.zeros(size, np.int64), np.zeros(size, np.int64), 0
        for text in texts:
            idx = np.array([index[w] for w in tokenize_words(text) if w in index], dtype=np.int64)
            np.add.at(counts, idx, 1)
            df[np.unique(idx)] += 1
            n += 1
        return cls(counts.tolist(), df.tolist(), n)

    def idf(self) -> np.ndarray:
        return np.log((1 + self.n_docs) / (1 + np.asarray(self.doc_freq, np.float64))) + 1.0

    def probability(self) -> np.ndarray:
        counts = np.asarray(self.counts, np.float64)
        return counts / max(counts.sum(), 1.0)

    @classmethod
    def from_json(cls, obj: dict) -> "CorpusStats":
        return cls(obj["counts"], obj["doc_freq"], obj["n_docs"], obj.get("sif_component"))


def save_state(state_dir: str, vectors: np.ndarray, words: list[str], stats: CorpusStats) -> None:
    """Write vectors (word2vec binary, not a pickle) and stats, then publish the folder atomically."""
    from gensim.models import KeyedVectors

    parent = os.path.dirname(state_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".w2v-", dir=parent)
    try:
        kv = KeyedVectors(vector_size=vectors.shape[1])
        kv.add_vectors(words, vectors)
        kv.save_word2vec_format(os.path.join(staging, "vectors.bin"), binary=True)
        with open(os.path.join(staging, "stats.json"), "w") as f:
            json.dump(dataclasses.asdict(stats), f)
        try:
            os.rename(staging, state_dir)
        except OSError:
            if not os.path.exists(os.path.join(state_dir, "stats.json")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
