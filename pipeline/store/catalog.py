"""The store root: create, list and resolve feature sets; DuckDB over all of them."""
from __future__ import annotations

import os
import re
from typing import Any

import pyarrow.fs as pafs

from ..errors import StoreError, UnknownName
from . import files
from .featureset import FeatureSet, load_manifest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_ROOT = "./mmfeat-store"


def default_root() -> str:
    return os.environ.get("MMFEAT_STORE") or DEFAULT_ROOT


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name or "") or ".." in name:
        raise StoreError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.' (max 128)")
    return name


class FeatureStore:
    """A store root holding ``<dataset>/<extractor>-<config_id[:12]>`` feature sets."""

    def __init__(self, root: str | None = None):
        self.uri = root or default_root()
        self.fs, self.root = files.open_filesystem(self.uri)

    def __repr__(self) -> str:
        return f"FeatureStore({self.uri!r})"

    def set_path(self, dataset: str, extractor: str, config_id: str) -> str:
        return files.join(self.root, check_name("dataset", dataset), f"{check_name('extractor', extractor)}-{config_id[:12]}")

    def create(self, provenance: dict[str, Any]) -> FeatureSet:
        """Open the feature set for this provenance, writing its manifest on first use."""
        path = self.set_path(provenance["dataset"], provenance["extractor"], provenance["config_id"])
        manifest_path = files.join(path, "_manifest.json")
        if files.exists(self.fs, manifest_path):
            manifest = load_manifest(self.fs, path)
            if manifest["config_id"] != provenance["config_id"]:
                raise StoreError(f"{path}: holds config_id {manifest['config_id']}, not {provenance['config_id']}")
            return FeatureSet(self.fs, path, manifest)
        files.write_json_atomic(self.fs, manifest_path, provenance)
        return FeatureSet(self.fs, path, load_manifest(self.fs, path))

    def feature_sets(self, dataset: str | None = None) -> list[FeatureSet]:
        """All feature sets with a manifest, sorted by dataset then name."""
        out = []
        datasets = [dataset] if dataset else files.list_names(self.fs, self.root, pafs.FileType.Directory)
        for ds in datasets:
            for sub in files.list_names(self.fs, files.join(self.root, ds), pafs.FileType.Directory):
                path = files.join(self.root, ds, sub)
                if files.exists(self.fs, files.join(path, "_manifest.json")):
                    out.append(FeatureSet(self.fs, path, load_manifest(self.fs, path)))
        return out

    def open(self, dataset: str, extractor: str, config_prefix: str | None = None) -> FeatureSet:
        """The feature set of ``dataset`` by ``extractor``; ``config_prefix`` picks among several configs."""
        candidates = [fs for fs in self.feature_sets(check_name("dataset", dataset))
                      if fs.manifest["extractor"] == extractor
                      and fs.config_id.startswith(config_prefix or "")]
        if not candidates:
            known = ", ".join(fs.name for fs in self.feature_sets()) or "none"
            raise UnknownName(f"no feature set {dataset}/{extractor}{'-' + config_prefix if config_prefix else ''} "
                              f"in {self.uri}; feature sets: {known}")
        if len(candidates) > 1:
            raise StoreError(f"several configs of {dataset}/{extractor}: "
                             f"{', '.join(c.name for c in candidates)}; name one as DATASET/EXTRACTOR-CONFIGPREFIX")
        return candidates[0]

    def resolve(self, spec: str) -> FeatureSet:
        """Parse ``DATASET/EXTRACTOR`` or ``DATASET/EXTRACTOR-CONFIGPREFIX``."""
        dataset, sep, rest = spec.partition("/")
        if not sep or not rest:
            raise StoreError(f"feature set must be DATASET/EXTRACTOR[-CONFIGPREFIX], got {spec!r}")
        match = re.match(r"^(.*?)-([0-9a-f]{4,64})$", rest)
        if match:
            return self.open(dataset, match.group(1), match.group(2))
        return self.open(dataset, rest)

    def duckdb(self, connection: Any = None) -> Any:
        """A DuckDB connection with a view per feature set (and ``<view>_rejects``)."""
        import duckdb

        con = connection or duckdb.connect()
        sets = self.feature_sets()
        short_counts: dict[str, int] = {}
        for fs in sets:
            key = view_name(fs.manifest["dataset"], fs.manifest["extractor"])
            short_counts[key] = short_counts.get(key, 0) + 1
        for fs in sets:
            short = view_name(fs.manifest["dataset"], fs.manifest["extractor"])
            names = [f"{short}_{fs.config_id[:12]}"] + ([short] if short_counts[short] == 1 else [])
            for kind, suffix in (("part", ""), ("rejects", "_rejects")):
                paths = fs.files(kind)
                if not paths:
                    continue
                listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                for name in names:
                    con.execute(f'CREATE OR REPLACE VIEW "{name}{suffix}" AS SELECT * FROM read_parquet([{listing}])')
        return con


def view_name(dataset: str, extractor: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{dataset}__{extractor}")
