"""Inputs: manifests, folders and globs read into a dataset table, and each item's content hash."""
from .columns import ROLES
from .content import build_items, manifest_digest
from .dataset import Dataset, load_dataset, require_modality_columns, resolve_paths, text_hash
from .infer import infer_modality
from .layout import SPLITS, default_dataset_name, is_glob, source_root

__all__ = ["Dataset", "load_dataset", "require_modality_columns", "resolve_paths", "text_hash", "build_items",
           "manifest_digest", "SPLITS", "ROLES", "default_dataset_name", "infer_modality", "is_glob", "source_root"]
