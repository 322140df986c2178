"""Config dataclasses: canonical JSON, stable ids, and KEY=VALUE overrides."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any

from .errors import MmfeatError, UnknownName


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same config always gives the same text."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (weights provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def option(default: Any, doc: str, *, runtime: bool = False, added: bool = False) -> Any:
    """A config field with its one-line documentation beside it (``mmfeat describe`` and the docs' option
    tables are rendered from it). ``runtime``: changes how work runs (batch size, device, a weights *path*),
    not what it computes: recorded in provenance, left out of the config_id. ``added``: a field added after
    feature sets were stored with the config: at its default it is left out of the config_id, so that the
    sets stored before it existed keep their ids (no silent re-extraction)."""
    metadata = {"doc": doc, **({"runtime": True} if runtime else {}), **({"omit_default": True} if added else {})}
    return dataclasses.field(default=default, metadata=metadata)


def runtime_field(default: Any, doc: str = "") -> Any:
    """A runtime field (see :func:`option`): recorded in provenance, left out of the config_id."""
    return option(default, doc, runtime=True)


def added_field(default: Any, doc: str = "") -> Any:
    """An added field (see :func:`option`): left out of the config_id while at its default."""
    return option(default, doc, added=True)


def field_doc(field: dataclasses.Field) -> str:
    return field.metadata.get("doc", "")


def identity(config: Any) -> dict[str, Any]:
    """The config fields that define the features (runtime fields, and added fields at their default,
    dropped)."""
    values = dataclasses.asdict(config)
    return {f.name: values[f.name] for f in dataclasses.fields(config) if not f.metadata.get("runtime")
            and not (f.metadata.get("omit_default") and values[f.name] == f.default)}


_DIGESTS: dict[tuple, str] = {}


def cached_file_digest(path: str) -> str:
    """sha256 of a weights file, computed once per (path, size, mtime) in this process."""
    import os

    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def config_id(extractor: str, config: Any, weights_sha256: str | None, version: str) -> str:
    """The feature set id: sha256 of the canonical JSON of extractor name and code version, config
    (runtime fields left out) and weights hash."""
    payload = {"extractor": extractor, "version": version, "config": identity(config), "weights_sha256": weights_sha256}
    return sha256_text(canonical_json(payload))


def _coerce(text: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(text, non_none[0], key)
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise MmfeatError(f"--set {key}: expected true/false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise MmfeatError(f"--set {key}: expected {hint.__name__}, got {text!r}") from None
    if origin is tuple:
        item = args[0] if args else str
        return tuple(_coerce(part.strip(), item, key) for part in text.split(",") if part.strip())
    return text


def apply_overrides(config_type: type, overrides: dict[str, Any] | None) -> Any:
    """Build a config from string or typed overrides; unknown keys list the valid ones."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(config_type)
    fields = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UnknownName(f"unknown config key(s) {', '.join(unknown)} for {config_type.__name__}; "
                          f"valid keys: {', '.join(sorted(fields))}")
    values = {k: _coerce(v, hints[k], k) if isinstance(v, str) and hints[k] is not str else v
              for k, v in overrides.items()}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return config_type(**values)
    except (ValueError, TypeError) as exc:
        raise MmfeatError(f"invalid {config_type.__name__}: {exc}") from None


def parse_set_args(pairs: list[str] | None, flag: str = "--set") -> dict[str, str]:
    """Parse repeated ``--set KEY=VALUE`` arguments."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MmfeatError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise ValueError naming the valid values when ``value`` is not one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
