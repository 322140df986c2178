"""The store root: create, list and resolve feature sets; DuckDB over all of them."""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import pyarrow.fs as pafs

from ..errors import StoreError, UnknownName
from . import files
from .featureset import FeatureSet, load_manifest
from .items import DatasetItems

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_ROOT = "./mmfeat-store"
# What a set's config_id defines, so what a run can put right in a manifest damaged in a readable way.
DEFINING = ("format", "dataset", "extractor", "config", "dim", "frame_dim", "tensor", "sparse", "modality")
log = logging.getLogger("mmfeat")


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

    def __str__(self) -> str:
        sets = self.feature_sets() if files.exists(self.fs, self.root) else []
        return f"FeatureStore({self.uri!r}: {len(sets)} feature set(s){': ' if sets else ''}" \
               f"{', '.join(fs.name for fs in sets[:5])}{', ...' if len(sets) > 5 else ''})"

    def set_path(self, dataset: str, extractor: str, config_id: str) -> str:
        return files.join(self.root, check_name("dataset", dataset), f"{check_name('extractor', extractor)}-{config_id[:12]}")

    def dataset(self, name: str) -> DatasetItems:
        """The dataset's binding and current items (``<store>/<dataset>/``)."""
        return DatasetItems(self.fs, files.join(self.root, check_name("dataset", name)), name)

    def open_path(self, path: str) -> FeatureSet:
        """The feature set stored at ``path`` (as printed by ``ls --json``)."""
        return FeatureSet(self.fs, path, load_manifest(self.fs, path))

    def create(self, provenance: dict[str, Any]) -> FeatureSet:
        """Open the feature set for this provenance, writing its manifest on first use."""
        path = self.set_path(provenance["dataset"], provenance["extractor"], provenance["config_id"])
        manifest_path = files.join(path, "_manifest.json")
        if files.exists(self.fs, manifest_path):
            try:
                manifest = load_manifest(self.fs, path)
            except StoreError as exc:  # damaged: this run knows what it should say
                log.warning("%s: rewriting a damaged manifest from this run's provenance (%s)", path, exc)
                manifest = None
            if manifest is not None and manifest["config_id"] != provenance["config_id"]:
                raise StoreError(f"{path}: holds config_id {manifest['config_id']}, not {provenance['config_id']}")
            wrong = _disagreeing(manifest, provenance) if manifest is not None else []
            if manifest is not None and not wrong:
                return FeatureSet(self.fs, path, manifest)
            if wrong:
                log.warning("%s: the manifest's %s disagree with what its config_id defines; rewritten",
                            path, ", ".join(wrong))
        files.write_json_atomic(self.fs, manifest_path, provenance)
        return FeatureSet(self.fs, path, load_manifest(self.fs, path))

    def feature_sets(self, dataset: str | None = None) -> list[FeatureSet]:
        """All readable feature sets, sorted by dataset then name. A set whose manifest is damaged is
        left out and listed in ``self.problems`` (one broken set never hides the others)."""
        out, self.problems = [], []
        datasets = [dataset] if dataset else files.list_names(self.fs, self.root, pafs.FileType.Directory)
        for ds in datasets:
            for sub in files.list_names(self.fs, files.join(self.root, ds), pafs.FileType.Directory):
                path = files.join(self.root, ds, sub)
                if files.exists(self.fs, files.join(path, "_manifest.json")):
                    try:
                        out.append(FeatureSet(self.fs, path, load_manifest(self.fs, path)))
                    except StoreError as exc:
                        self.problems.append((path, str(exc)))
        return out

    def require(self) -> "FeatureStore":
        """Fail with one line when the root holds no store (a misspelled --store)."""
        info = self.fs.get_file_info(self.root)
        if info.type != pafs.FileType.Directory:
            raise StoreError(f"no store at {self.uri}: the folder does not exist (check --store or $MMFEAT_STORE)")
        return self

    def open(self, dataset: str, extractor: str, config_prefix: str | None = None) -> FeatureSet:
        """The feature set of ``dataset`` by ``extractor``; ``config_prefix`` picks among several configs."""
        from ..registry import canonical_extractor_name

        extractor = canonical_extractor_name(extractor)
        candidates = [fs for fs in self.feature_sets(check_name("dataset", dataset))
                      if canonical_extractor_name(fs.manifest["extractor"]) == extractor
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

    def views(self) -> tuple[list[tuple[str, FeatureSet]], list[str]]:
        """(view name, feature set) pairs and notes. Every set has ``<dataset>__<extractor>_<config12>``;
        the short ``<dataset>__<extractor>`` names the most recently created config, announced in a note
        when there are several (so a name never mixes configs, and never silently disappears). A set whose
        dataset's items cannot be read is left out and named; damaged shards are left out of their views."""
        sets, notes = [], []
        for fs in self.feature_sets():
            try:
                fs.items.current()
                if not files.exists(self.fs, fs.items.items_path):
                    raise StoreError(f"{fs.items.items_path} is missing: mmfeat fsck --repair restores it from the "
                                     "last run's snapshot, and the next extract does too")
                if fs.files():  # healthy shards only, as the Python reader reads
                    sets.append(fs)
                notes += [f"skipped shard {shard} of {fs.name}: {why} (mmfeat fsck --repair)" for shard, why in fs.problems]
            except StoreError as exc:
                notes.append(f"skipped {fs.name}: {exc}")
        notes += [f"skipped {path}: {why}" for path, why in self.problems]
        groups: dict[str, list[FeatureSet]] = {}
        for fs in sets:
            groups.setdefault(view_name(fs.manifest["dataset"], fs.manifest["extractor"]), []).append(fs)
        views = []
        for short, members in sorted(groups.items()):
            members.sort(key=lambda f: (self.fs.get_file_info(files.join(f.path, "_manifest.json")).mtime_ns or 0,
                                        f.config_id))
            views += [(f"{short}_{fs.config_id[:12]}", fs) for fs in members]
            views.append((short, members[-1]))
            if len(members) > 1:
                notes.append(f"view {short} = {members[-1].name} (the most recent of {len(members)} configs; "
                             f"the others: {', '.join(short + '_' + f.config_id[:12] for f in members[:-1])})")
        return views, notes

    def summaries(self) -> list[dict[str, Any]]:
        """Every readable set's summary; a set that cannot be summarized is named in ``self.problems``."""
        out = []
        sets = self.feature_sets()
        problems = list(self.problems)
        for fs in sets:
            try:
                out.append(fs.summary())
            except StoreError as exc:
                problems.append((fs.path, str(exc)))
        self.problems = problems
        return out

    def query(self, sql: str, safe: bool = False) -> Any:
        """Run SQL over the views (:meth:`duckdb`); a failure is one line, an unknown view lists the views.
        ``safe``: DuckDB may then read only the store's files (no other file, no network, no extension)."""
        import duckdb

        con = self.duckdb(safe=safe)
        try:
            return con.sql(sql)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            known = [r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
            hint = f"; views: {', '.join(known) or 'none'}" if isinstance(exc, duckdb.CatalogException) else ""
            raise StoreError(f"query failed: {first}{hint}") from None

    def duckdb(self, connection: Any = None, safe: bool = False) -> Any:
        """A DuckDB connection with a view per feature set over its current view (and ``<view>_rejects``):
        SQL over the committed files, joined with the dataset's current items, nothing loaded up front.
        What :meth:`views` noted (skipped sets, which config a short name means) is left in ``self.notes``.
        ``safe``: the connection may read the store's own folder only (no other file, no extension
        installs, no network), for SQL from anyone less trusted than the store's owner."""
        import itertools

        import duckdb

        con = connection or duckdb.connect()
        numbers = itertools.count()

        def relation(paths: list[str]) -> str:
            if isinstance(self.fs, pafs.LocalFileSystem):
                return f"read_parquet({_files_sql(paths)})"
            # Object stores: DuckDB's own S3 reader is an extension fetched from the internet; pyarrow
            # reads the same files through the store's filesystem, lazily, as a registered dataset.
            import pyarrow.dataset as pads

            name = f"_mmfeat_files_{next(numbers)}"
            con.register(name, pads.dataset(paths, filesystem=self.fs, format="parquet"))
            return name

        views, self.notes = self.views()
        sql: dict[str, tuple[str, str]] = {}  # per set: its full and short names share one SELECT
        for name, fs in views:
            if fs.path not in sql:
                sql[fs.path] = view_sql(fs, relation)
                for extra in ("audit", "neighbors"):  # the set's latest audit findings and neighbours
                    latest = files.join(fs.path, f"_{extra}", "latest.parquet")
                    if files.exists(self.fs, latest):
                        short = view_name(fs.manifest["dataset"], fs.manifest["extractor"])
                        con.execute(f'CREATE OR REPLACE VIEW "{short}_{extra}" AS SELECT * FROM {relation([latest])}')
                for head in files.list_names(self.fs, files.join(fs.path, "_predictions")):
                    if head.endswith(".parquet") and not head.startswith("."):
                        view = view_name(fs.manifest["dataset"], head[:-8]) + "_predictions"
                        source = relation([files.join(fs.path, "_predictions", head)])
                        con.execute(f'CREATE OR REPLACE VIEW "{view}" AS SELECT * FROM {source}')
            features, rejects = sql[fs.path]
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {features}')
            con.execute(f'CREATE OR REPLACE VIEW "{name}_rejects" AS {rejects}')
        if safe:
            _lock_down(con, self.root if isinstance(self.fs, pafs.LocalFileSystem) else None)
        return con


def _lock_down(con: Any, root: str | None) -> None:
    """DuckDB reads only under ``root`` from now on: no other file, no extension installs, no network."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if root:
        con.execute(f"SET allowed_directories = ['{root.replace(chr(39), chr(39) * 2)}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _files_sql(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def view_sql(fs: FeatureSet, relation=None) -> tuple[str, str]:
    """DuckDB SELECTs of a set's current view and its current rejects (the Python reader's semantics);
    ``relation(paths)`` names the files in SQL (default: ``read_parquet([...])`` of local paths).
    Footers are checked by :meth:`FeatureStore.views` before."""
    relation = relation or (lambda paths: f"read_parquet({_files_sql(paths)})")
    parts, items = relation(fs.files()), relation([fs.items.items_path])
    frames = ", p.frames" if fs.manifest.get("frame_dim") else ""
    split = "coalesce(i.split, i.assigned_split)" if _has_assigned(fs) else "i.split"
    preview = ", i.preview" if _has_assigned(fs) else ""  # the start of a text item's text (null for files)
    features = (f"SELECT p.id, i.label, {split} AS split, i.source, CASE WHEN p.row_meta IS NULL THEN i.meta "
                f"WHEN i.meta IS NULL THEN p.row_meta ELSE map_concat(i.meta, p.row_meta) END AS meta, "
                f"p.features{frames}{preview} FROM {parts} p JOIN {items} i "
                f"ON p.item = i.id AND p.content = i.content QUALIFY row_number() OVER (PARTITION BY p.id) = 1")
    reject_files = fs.files("rejects")
    if not reject_files:
        return features, ("SELECT NULL::VARCHAR id, NULL::VARCHAR source, NULL::VARCHAR stage, NULL::VARCHAR reason, "
                          "NULL::BOOLEAN retryable, NULL::VARCHAR message WHERE false")
    rejects = (f"SELECT r.id, r.source, r.stage, r.reason, r.retryable, r.message FROM {relation(reject_files)} r "
               f"JOIN {items} i ON r.id = i.id AND r.content IS NOT DISTINCT FROM i.content "
               f"WHERE NOT EXISTS (SELECT 1 FROM {parts} p WHERE p.item = r.id AND p.content = r.content) "
               f"QUALIFY row_number() OVER (PARTITION BY r.id) = 1")
    return features, rejects


def _has_assigned(fs: FeatureSet) -> bool:
    """Whether the items file holds the store's splits (older ones do not)."""
    import pyarrow.parquet as pq

    try:
        return "assigned_split" in pq.read_schema(fs.items.items_path, filesystem=fs.fs).names
    except (OSError, ValueError):
        return False


def view_name(dataset: str, extractor: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{dataset}__{extractor}")


def _disagreeing(manifest: dict[str, Any], provenance: dict[str, Any]) -> list[str]:
    """The defining keys a stored manifest holds with another value than this run's provenance (keys an older
    manifest lacks are not counted)."""
    def plain(value):
        return json.loads(json.dumps(value, sort_keys=True))

    return [k for k in DEFINING if k in manifest and k in provenance and plain(manifest[k]) != plain(provenance[k])]
