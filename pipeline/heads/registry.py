"""The head extension point: an abstract kind plus a name registry, as extractors have.

A new head kind is one module with a class like this, decorated with ``@register_head``::

    @register_head
    class KNNHead(HeadKind):
        name = "knn"
        params_type = KNNParams            # frozen dataclass of the kind's own --set keys
        def train(self, job: TrainJob) -> TrainedHead: ...
        def build(self, card: dict) -> nn.Module: ...   # the architecture a card describes

Every kind answers the same few verbs (sklearn's estimator contract, skorch's one loop): ``train`` on a
:class:`TrainJob` (joined features, splits, the common settings), ``build`` the module a saved card
describes (its weights are loaded and checked by the caller), ``predict`` probabilities of feature rows.
Several kinds can answer one ``--head`` name (``family``): ``finetune`` is the image top from stored
activations, the text top from token states or the network on the images, chosen by ``accepts(sets)``.
``MMFEAT_PLUGINS`` modules register kinds in every process, as they do extractors.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, ClassVar

import numpy as np

from ..errors import MmfeatError, UnknownName
from ..plugins import load_plugins

# The built-in kinds and the module each registers from, imported when a kind is looked up (so that the
# CLI checks --head without loading torch), and the families several of them answer to.
# name -> (module, its params class in heads/config.py, family)
_BUILTIN = {"linear": ("linear", "LinearParams", None), "mlp": ("mlp", "MLPParams", None),
            "prototype": ("prototype", "PrototypeParams", None), "sequence": ("sequence", "SequenceParams", None),
            "image-top": ("image_top", "FinetuneParams", "finetune"), "text-top": ("text_top", "FinetuneParams", "finetune"),
            "network": ("network", "FinetuneParams", "finetune")}
_REGISTRY: dict[str, type["HeadKind"]] = {}


@dataclasses.dataclass
class TrainJob:
    """What a kind trains on: the joined feature sets, the splits (``data``), the common settings
    (``cfg``), its own ``params``, and where the head goes."""

    sets: list
    data: Any  # heads.data.HeadData
    cfg: Any  # heads.config.HeadConfig
    params: Any
    head_dir: str
    store: Any  # the FeatureStore holding the sets
    device: str
    name: str  # the --head name asked for (a family or a kind)


@dataclasses.dataclass
class TrainedHead:
    """What a kind's ``train`` returns; the card, metrics and report are made from it alike for all kinds.

    ``test_logits`` are in the order of ``y_test`` (default: the job's test split). A kind that trains on
    other sets than it was given (the network fine-tune extracts them again) returns them in ``sets``
    with their ``data``."""

    model: Any  # torch.nn.Module
    best: Any  # training.Fit: the chosen candidate
    fits: list  # every candidate tried (the sweep)
    temperature: float
    test_logits: Any  # torch.Tensor
    seconds: float
    solver: str
    dim: int
    mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    std: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    penalties: tuple = ()
    refit: dict | None = None
    y_test: np.ndarray | None = None
    sets: list | None = None
    data: Any = None
    report: dict = dataclasses.field(default_factory=dict)  # merged into the card's "data"
    params: dict | None = None  # the settings used, when they differ from the job's (a resolved width)
    carried: dict[str, str] | None = None  # file name -> path of more files the run carries
    card: dict = dataclasses.field(default_factory=dict)  # more top-level card entries
    reference: dict | None = None  # scikit-learn's fit on the same features (metrics.sklearn_logreg)


class HeadKind(abc.ABC):
    """Base class of head kinds (see module docstring). Optional hooks have defaults."""

    name: ClassVar[str]
    params_type: ClassVar[type]
    #: the --head name several kinds share (chosen by ``accepts``); None: only ``name``
    family: ClassVar[str | None] = None
    #: whether cards carry a standardization (mean, std per input column) that ``predict`` applies
    standardized: ClassVar[bool] = True

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.params_type()

    def accepts(self, sets: list) -> bool:
        """Whether this kind trains on these sets (how a family picks its member)."""
        return True

    def needs(self) -> str:
        """What ``accepts`` wants, for the error when no member of a family accepts the sets."""
        return ""

    def input_column(self, sets: list) -> str:
        """The column the kind reads: ``features``, or ``frames`` (padded sequences)."""
        return "features"

    def streams(self, sets: list, cfg: Any) -> bool:
        """True when the kind reads its features itself (larger than memory): the join then carries none."""
        return False

    def check(self, sets: list, cfg: Any) -> None:
        """Refuse, with one line, sets or settings the kind cannot train on (before anything is read)."""

    @abc.abstractmethod
    def train(self, job: TrainJob) -> TrainedHead:
        """Fit on ``job.data.train``, choose on ``job.data.val``, return the test logits."""

    @abc.abstractmethod
    def build(self, card: dict) -> Any:
        """The untrained module a card describes (shapes only: the caller loads and checks the weights)."""

    def check_card(self, card: dict) -> list[str]:
        """Problems of a card beyond the common schema (one phrase each)."""
        return []

    def owns(self, card: dict) -> bool:
        """For family members: whether a card without a ``kind`` entry (older heads) is this kind's."""
        return card.get("head") == self.name

    def budgeted(self) -> bool:
        """Whether ``build`` is sized by the card alone (its parameters are counted before allocation)."""
        return True

    def predict(self, model: Any, x: Any, card: dict, batch: int = 65536) -> np.ndarray:
        """Class probabilities of feature rows (standardized with the card's statistics)."""
        from .solvers import predict_proba

        std = card["standardization"]
        return predict_proba(model, x, np.asarray(std["mean"], np.float32), np.asarray(std["std"], np.float32),
                             temperature=float(card.get("temperature", 1.0)), batch=batch)

    def training_sentence(self, card: dict) -> str:
        """How the head was chosen, one sentence for the report."""
        how = (f"and the epoch ({card['selected']['epoch']}) by early stopping on it"
               if card.get("solver") != "lbfgs" else "solver L-BFGS (exact fit)")
        if card["selected"]["l2"] is None:  # late fusion: one classifier per set
            return (f"Late fusion was chosen on validation: one classifier per feature set, each with its own L2 "
                    f"penalty chosen on validation ({how}), their logits pooled with weights fitted on validation.")
        return f"The L2 penalty ({card['selected']['l2']:g}) was chosen on validation, {how}."

    def export(self, run: str, card: dict, model: Any, out: str) -> dict:
        """Write what the head tuned of a pretrained network for extraction (``mmfeat export``)."""
        raise MmfeatError(f"a {card['head']} head has no network layers to export (head=finetune has)")


def register_head(cls: type[HeadKind]) -> type[HeadKind]:
    """Class decorator adding a head kind under ``cls.name``. A second, different class under a taken
    name (or a family's name) is refused; re-importing the same module is fine."""
    taken = _REGISTRY.get(cls.name)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"head kind {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}; "
                         f"choose another name for {cls.__module__}.{cls.__qualname__}")
    if any(k.family == cls.name for k in _REGISTRY.values()):
        raise ValueError(f"head kind name {cls.name!r} is a family of other kinds")
    if not (dataclasses.is_dataclass(cls.params_type) and cls.params_type.__dataclass_params__.frozen):
        raise TypeError(f"{cls.__name__}.params_type must be a frozen dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    for module, _, _ in _BUILTIN.values():
        importlib.import_module(f"pipeline.heads.{module}")
    load_plugins()


def kind_infos() -> list[tuple[str, str | None, type]]:
    """(name, family, params class) of every kind, built-ins without importing their (torch) modules."""
    from . import config

    load_plugins()
    infos = {name: (family, getattr(config, params)) for name, (_, params, family) in _BUILTIN.items()}
    infos.update({name: (k.family, k.params_type) for name, k in _REGISTRY.items()})
    return [(name, family, params) for name, (family, params) in sorted(infos.items())]


def kinds() -> dict[str, type[HeadKind]]:
    """Every registered kind by name (built-ins and MMFEAT_PLUGINS)."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def head_names() -> list[str]:
    """What ``--head`` accepts: every kind and every family, sorted (no built-in module imported)."""
    load_plugins()
    return sorted({name for name, _, _ in kind_infos()} | {family for _, family, _ in kind_infos() if family})


def kind_class(name: str, sets: list | None = None) -> type[HeadKind]:
    """The kind called ``name``; for a family, the member that accepts ``sets``."""
    registered = kinds()
    if name in registered:
        return registered[name]
    members = [k for k in registered.values() if k.family == name]
    if not members:
        raise UnknownName(f"unknown head {name!r}; registered: {', '.join(head_names())}")
    if sets is None:
        return members[0]
    for member in members:
        if member().accepts(sets):
            return member
    raise MmfeatError(f"head={name} takes one feature set: " + "; ".join(m().needs() for m in members))


def kind_of_card(card: dict) -> HeadKind:
    """The kind a saved card belongs to (its ``kind``; older cards: the family member that owns it)."""
    registered = kinds()
    name = card.get("kind") or card.get("head")
    if name in registered:
        return registered[name]()
    members = [k() for k in registered.values() if k.family == name]
    for member in members:
        if member.owns(card):
            return member
    raise MmfeatError(f"unknown head kind {name!r} in the card; registered: {', '.join(head_names())}")
