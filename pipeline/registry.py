"""The extractor extension point: an abstract base class plus a name registry.

A new extractor is one module with a class like this, decorated with ``@register_extractor``::

    @register_extractor
    class MyExtractor(Extractor):
        name = "my"
        modality = "image"
        version = "1"                   # bump when the code computes different features: a new set id
        config_type = MyConfig          # frozen dataclass, validated in __post_init__
        @property
        def dim(self) -> int: ...
        def extract(self, batch: ItemBatch) -> BatchResult: ...

Map-style extractors (decode each item, embed batches) subclass ``pipeline.extractors.batching.
MapExtractor`` and write ``decoder`` and ``embed`` only. A missing abstract method fails when the
extractor is built, not in the middle of a shard.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import warnings
from typing import Any, ClassVar

import numpy as np

from .config import apply_overrides, config_id
from .errors import BadInput, UnknownName
from .plugins import load_plugins

MODALITIES = ("image", "text", "audio")
DEFAULT_EXTRACTOR = {"image": "cnn", "text": "bert", "audio": "spectral"}
# Built-in extractors: name -> (modality, the module that registers it, its config class). The modules load
# on first lookup; the configs (torch-free modules) answer `mmfeat describe` and argument checks at once.
_BUILTIN = {
    "cnn": ("image", "pipeline.extractors.image.cnn", "pipeline.extractors.image.config:CNNConfig"),
    "bert": ("text", "pipeline.extractors.text.bert", "pipeline.extractors.text.config:BertConfig"),
    "word2vec": ("text", "pipeline.extractors.text.word2vec", "pipeline.extractors.text.config:Word2VecConfig"),
    "tfidf": ("text", "pipeline.extractors.text.tfidf", "pipeline.extractors.text.config:TfidfConfig"),
    "spectral": ("audio", "pipeline.extractors.audio.spectral", "pipeline.extractors.audio.config:SpectralConfig"),
}
_CORPUS_FITTED = {"word2vec", "tfidf"}
_REGISTRY: dict[str, type["Extractor"]] = {}
_ALIASES: dict[str, str] = {}  # old name -> current name (renamed extractors stay readable)


@dataclasses.dataclass
class ItemBatch:
    """Items handed to an extractor: ``ids`` and ``sources``: absolute paths, or texts when ``kind == "text"``."""

    ids: list[str]
    sources: list[str | None]
    kind: str = "path"

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass
class Corpus:
    """What a corpus-fitted extractor learns from: the usable inputs of a dataset (paths or texts)."""

    inputs: list[str]
    kind: str = "text"


@dataclasses.dataclass
class Reject:
    index: int
    reason: str
    message: str
    stage: str = "decode"

    @classmethod
    def from_error(cls, index: int, err: BadInput) -> "Reject":
        return cls(index, err.reason, err.message, err.stage)


@dataclasses.dataclass
class BatchResult:
    """Features of the accepted items (``ok`` indexes into the batch) and the rejects. An item cut
    into several segments (audio windows) has one row per segment: its index repeats in ``ok``,
    and ``segments`` gives each row's (start, end) in seconds."""

    # float32 (len(ok), dim): an ndarray, a scipy CSR matrix from a sparse extractor, or uint16 bfloat16
    # bit patterns from a tensor extractor (``Extractor.tensor_shape``; see ``bf16_bits``)
    features: Any
    ok: np.ndarray  # int64 indices into the batch
    rejects: list[Reject]
    sequences: list[np.ndarray] | None = None  # optional frame-level (t, d) arrays, aligned with ok
    segments: np.ndarray | None = None  # optional float (len(ok), 2) start/end seconds
    row_meta: list[dict[str, str]] | None = None  # optional entries added to each row's meta

    def select(self, keep: np.ndarray) -> "BatchResult":
        """The rows where ``keep`` (a boolean mask over rows) is true, every per-row field alike."""
        pick = lambda values: [v for v, k in zip(values, keep) if k] if values is not None else None  # noqa: E731
        return dataclasses.replace(self, features=self.features[np.flatnonzero(keep)], ok=self.ok[keep], sequences=pick(self.sequences),
                                   segments=self.segments[keep] if self.segments is not None else None,
                                   row_meta=pick(self.row_meta))

    def __post_init__(self):
        n = len(self.ok)
        if _is_sparse(self.features):
            if self.features.dtype != np.float32 or self.features.shape[0] != n:
                raise TypeError(f"sparse features must be float32 (n_ok, dim); got {self.features.dtype} {self.features.shape}")
            self.features = self.features.tocsr()
        elif self.features.dtype not in (np.float32, np.uint16) or self.features.ndim != 2 or self.features.shape[0] != n:
            raise TypeError(f"features must be float32 (n_ok, dim); got {self.features.dtype} {self.features.shape}")


def _is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr")  # scipy.sparse matrices and arrays, without importing scipy here


def finite_rows(features: Any) -> np.ndarray:
    """Boolean mask of the rows holding only finite values (dense or sparse features)."""
    if not _is_sparse(features) and features.dtype == np.uint16:  # bfloat16 bits: exponent all ones
        return ((features & 0x7F80) != 0x7F80).all(axis=1)
    if not _is_sparse(features):
        return np.isfinite(features).all(axis=1)
    m = features.tocsr()
    bad_entries = ~np.isfinite(m.data)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return ~np.bincount(rows[bad_entries], minlength=m.shape[0]).astype(bool)


class Extractor(abc.ABC):
    """Base class of feature extractors (see module docstring). Optional hooks have defaults."""

    name: ClassVar[str]
    modality: ClassVar[str]
    config_type: ClassVar[type]
    version: ClassVar[str] = "1"
    #: True for extractors that learn from the dataset's corpus before extracting (``fit_corpus``).
    corpus_fitted: ClassVar[bool] = False
    #: True for extractors whose features are mostly zeros (tf-idf): stored as indices + values per row,
    #: and ``extract`` returns them as a scipy CSR matrix.
    sparse: ClassVar[bool] = False
    #: The torch device the extractor computes on (None: not a torch extractor).
    device: Any = None

    def __init__(self, config: Any):
        self.config = config

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of one feature vector."""

    @abc.abstractmethod
    def extract(self, batch: ItemBatch) -> BatchResult:
        """Features of a batch of items; bad items become rejects (``BadInput``), never exceptions."""

    @property
    def frame_dim(self) -> int | None:
        """Width of per-frame sequences when the extractor stores them (``BatchResult.sequences``)."""
        return None

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights (or fitted state) behind the features (None when there are none)."""
        return None

    @property
    def tensor_shape(self) -> tuple[int, ...] | None:
        """Shape of each row's tensor when the extractor stores activations (C, H, W) rather than
        vectors: rows are then bfloat16 bit patterns (uint16), ``dim`` = the product of the shape."""
        return None

    @property
    def config_id(self) -> str:
        return config_id(self.name, self.config, self.weights_sha256, self.version)

    @classmethod
    def weights_digest(cls, config: Any) -> str | None:
        """The weights' sha256 (None: no weights) found without loading the model, so that a run with
        nothing to extract loads none; raise NotImplementedError when only the loaded model can tell."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Provenance beyond the config (device, dtype, weights source)."""
        return {}

    def fit_corpus(self, corpus: Corpus | None, state_dir: str) -> None:
        """Corpus-fitted extractors: learn from ``corpus`` and save the state in ``state_dir``, or load
        what an earlier run saved there. ``corpus`` is None when the state must already exist."""


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator adding an extractor to the registry under ``cls.name``. A second, different
    class under a taken name is refused (re-importing the same module is fine)."""
    if cls.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}; got {cls.modality!r}")
    taken = _REGISTRY.get(cls.name)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"extractor name {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}; "
                         f"choose another name for {cls.__module__}.{cls.__qualname__}")
    if cls.name in _ALIASES:
        raise ValueError(f"extractor name {cls.name!r} is an alias of {_ALIASES[cls.name]!r}")
    _REGISTRY[cls.name] = cls
    return cls


def register_alias(old: str, new: str) -> None:
    """Keep a renamed extractor reachable: ``old`` resolves to ``new`` (with a warning), and feature
    sets stored under ``old`` stay readable by either name (as timm's model deprecations)."""
    if old in _REGISTRY:
        raise ValueError(f"{old!r} is a registered extractor, not free for an alias")
    _ALIASES[old] = new


def canonical_extractor_name(name: str) -> str:
    return _ALIASES.get(name, name)


def list_extractors(modality: str | None = None) -> list[str]:
    """Every extractor's name (built-ins and MMFEAT_PLUGINS), without importing a built-in's model code."""
    load_plugins()
    names = {n: m for n, (m, _, _) in _BUILTIN.items()} | {n: c.modality for n, c in _REGISTRY.items()}
    return sorted(n for n, m in names.items() if modality in (None, m))


def extractor_name(name: str) -> str:
    """The registered name ``name`` stands for (a renamed extractor's old name warns); unknown names list the
    registered ones."""
    return _resolved(name)


def _resolved(name: str) -> str:
    if name in _ALIASES:
        warnings.warn(f"extractor {name!r} was renamed {_ALIASES[name]!r}", DeprecationWarning, stacklevel=3)
        name = _ALIASES[name]
    if name not in _REGISTRY and name not in _BUILTIN:
        load_plugins()
    if name not in _REGISTRY and name not in _BUILTIN:
        raise UnknownName(f"unknown extractor {name!r}; registered: {', '.join(list_extractors())}")
    return name


def extractor_class(name: str) -> type[Extractor]:
    name = _resolved(name)
    if name not in _REGISTRY:
        importlib.import_module(_BUILTIN[name][1])
    return _REGISTRY[name]


def extractor_info(name: str) -> tuple[str, type, str, bool]:
    """(modality, config class, version, corpus_fitted) of an extractor; a built-in's without its model code."""
    name = _resolved(name)
    if name in _REGISTRY or name not in _BUILTIN:
        cls = _REGISTRY[name]
        return cls.modality, cls.config_type, cls.version, cls.corpus_fitted
    modality, _, where = _BUILTIN[name]
    module, _, attr = where.partition(":")
    config_type = getattr(importlib.import_module(module), attr)
    return modality, config_type, config_type.extractor_version, name in _CORPUS_FITTED


def create_extractor(name: str, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Extractor:
    """Instantiate a registered extractor from config overrides (strings are coerced)."""
    cls = extractor_class(name)
    return cls(apply_overrides(cls.config_type, {**(overrides or {}), **kwargs}))


def check_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The extractor's config from ``overrides``, checked (unknown keys, bad values) without its model code."""
    return apply_overrides(extractor_info(name)[1], overrides)


def cheap_config_id(name: str, overrides: dict[str, Any] | None = None) -> str | None:
    """The feature set id of an extractor config without loading its model (None when it takes the model)."""
    cls = extractor_class(name)
    config = apply_overrides(cls.config_type, overrides)
    try:
        digest = cls.weights_digest(config)
    except NotImplementedError:
        return None
    return config_id(cls.name, config, digest, cls.version)


_CACHE: dict[tuple[str, str], Extractor] = {}


def cached_extractor(name: str, overrides: dict[str, Any] | None = None) -> Extractor:
    """Like ``create_extractor`` but loads each (name, config) once per process (workers reuse models)."""
    from .config import canonical_json

    cls = extractor_class(name)
    config = apply_overrides(cls.config_type, overrides)
    key = (name, canonical_json(config))
    if key not in _CACHE:
        _CACHE[key] = cls(config)
    return _CACHE[key]


def bf16_bits(x: Any) -> np.ndarray:
    """A float torch tensor as uint16 bfloat16 bit patterns (round to nearest even), rows flattened."""
    import torch

    return x.detach().to(torch.bfloat16).reshape(len(x), -1).view(torch.int16).cpu().numpy().view(np.uint16)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
