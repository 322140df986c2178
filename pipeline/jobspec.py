"""What defines an extraction (``JobSpec``): small and picklable, so that workers rebuild the job from it. Every
field is checked when it is made, before any item is read: the modality (inferred from the files' types
when not given), the extractor and its config, the manifest's column mapping."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from .config import apply_overrides
from .errors import MmfeatError
from .inputs import ROLES, default_dataset_name, infer_modality
from .registry import DEFAULT_EXTRACTOR, MODALITIES, extractor_info, extractor_name


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """``source``: a folder, manifest or glob; ``modality``: image, text or audio (None: from the files'
    types); ``overrides``: the extractor's config keys; ``fit_on``: for corpus-fitted extractors (word2vec,
    tfidf), the dataset whose fitted state to use, so that new data gets the feature set id of the data a
    head was trained on; ``columns``: (role, column) pairs naming the manifest's id, path, text, label and
    split columns; ``no_header``: a CSV without a header line (columns c0, c1, ...); ``rehash``: read every
    file again for its hash, whatever its size and time say."""

    source: str
    modality: str | None = None
    extractor: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    store: str | None = None
    allow_absolute: bool = False
    fit_on: str | None = None
    rebind: bool = False
    label_from_name: str | None = None
    limit: int | None = None
    columns: tuple[tuple[str, str], ...] = ()
    no_header: bool = False
    rehash: bool = False

    def __post_init__(self):
        bad = sorted(set(dict(self.columns)) - set(ROLES))
        if bad:
            raise MmfeatError(f"--columns names unknown role(s) {', '.join(bad)}; roles: {', '.join(ROLES)} "
                              "(e.g. --columns path=filename --columns label=category)")
        object.__setattr__(self, "source", os.path.abspath(self.source))
        modality = self.modality or self._inferred_modality()
        if modality not in MODALITIES:
            raise MmfeatError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
        name = extractor_name(self.extractor or DEFAULT_EXTRACTOR[modality])
        kind, config_type, _, corpus_fitted = extractor_info(name)  # no model code loaded
        if kind != modality:
            raise MmfeatError(f"extractor {name!r} is for {kind}, not {modality}")
        if self.fit_on and not corpus_fitted:
            raise MmfeatError(f"fit_on: extractor {name!r} learns nothing from a corpus (only corpus-fitted "
                              "extractors such as word2vec and tfidf take fit_on)")
        apply_overrides(config_type, dict(self.overrides))  # a bad key or value fails here, before any work
        object.__setattr__(self, "modality", modality)
        object.__setattr__(self, "extractor", name)
        # A sample is a dataset of its own: it never replaces the full dataset's current view.
        default = default_dataset_name(self.source) + (f"-limit{self.limit}" if self.limit else "")
        object.__setattr__(self, "dataset", self.dataset or default)
        object.__setattr__(self, "overrides", tuple(sorted(dict(self.overrides).items())))
        object.__setattr__(self, "columns", tuple(sorted(dict(self.columns).items())))

    def _inferred_modality(self) -> str:
        if self.extractor:
            return extractor_info(extractor_name(self.extractor))[0]
        return infer_modality(self.source, dict(self.columns), self.no_header)
