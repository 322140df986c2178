"""Word2Vec training, safe vector loading, and corpus statistics saved with a feature set."""
from __future__ import annotations

import dataclasses
import json
import os

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


# gensim's 5 epochs suit corpora of tens of millions of words; a small corpus needs more passes to train
# its vectors. Measured (linear head, dev sets): BBC news, 0.8M words: 5 epochs 83.6%, 20 93.4%, 40 95.5%,
# 60 96.2%; TREC questions, 60k words: 5 60.2%, 20 63.8%, 40 68.0%, 100 69.0%. So epochs=auto gives every
# corpus about UPDATE_BUDGET word updates: 5 epochs from 6M words up, at most MAX_AUTO_EPOCHS.
UPDATE_BUDGET = 30_000_000
MAX_AUTO_EPOCHS = 100


def auto_epochs(words: int) -> int:
    return int(max(5, min(MAX_AUTO_EPOCHS, -(-UPDATE_BUDGET // max(words, 1)))))


def train(texts, config) -> tuple[np.ndarray, list[str], dict]:
    """(vectors, words, training facts: corpus words and the epochs used)."""
    from gensim.models import Word2Vec

    model = Word2Vec(vector_size=config.vector_size, window=config.window, min_count=config.min_count,
                     workers=config.workers, sg=config.sg, seed=config.seed)
    sentences = _Sentences(texts)
    model.build_vocab(sentences)
    if not len(model.wv):
        raise MmfeatError(f"word2vec: no word occurs min_count={config.min_count} times in the corpus")
    epochs = config.epochs or auto_epochs(model.corpus_total_words)
    model.train(sentences, total_examples=model.corpus_count, epochs=epochs)
    facts = {"corpus_words": int(model.corpus_total_words), "corpus_texts": int(model.corpus_count), "epochs": epochs}
    return model.wv.vectors, list(model.wv.index_to_key), facts


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
    training: dict | None = None  # corpus size and the epochs used (epochs=auto chooses them from it)

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
        return cls(obj["counts"], obj["doc_freq"], obj["n_docs"], obj.get("sif_component"), obj.get("training"))


def save_state(state_dir: str, vectors: np.ndarray, words: list[str], stats: CorpusStats) -> None:
    """Write vectors (word2vec binary, not a pickle) and stats, then publish the folder atomically."""
    from gensim.models import KeyedVectors

    from ...store.files import staged_local_folder

    with staged_local_folder(state_dir, "stats.json") as staging:
        kv = KeyedVectors(vector_size=vectors.shape[1])
        kv.add_vectors(words, vectors)
        kv.save_word2vec_format(os.path.join(staging, "vectors.bin"), binary=True)
        with open(os.path.join(staging, "stats.json"), "w") as f:
            json.dump(dataclasses.asdict(stats), f)
