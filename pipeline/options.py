"""The option tables ``mmfeat describe`` prints and the docs render: one row per config key, read from the
config dataclasses themselves (type, default, whether the key changes the feature set id, and the one-line
doc kept beside each field). A test checks that every key has its doc."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any


def options(config_type: type) -> list[dict[str, Any]]:
    """One row per config key: key, type, default, changes_id, doc."""
    hints = typing.get_type_hints(config_type)
    rows = []
    for f in dataclasses.fields(config_type):
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
        rows.append({"key": f.name, "type": str(kind), "default": list(default) if isinstance(default, tuple) else default,
                     "changes_id": not f.metadata.get("runtime"), "doc": f.metadata.get("doc", "")})
    return rows


def summary_line(cls: type) -> str:
    """The first line of a class's docstring (the config's, unless it is dataclass's generated signature)."""
    doc = (cls.__doc__ or "").strip()
    return (doc.splitlines() or [""])[0].replace("``", "")


def describe_extractor(name: str) -> dict[str, Any]:
    from .registry import canonical_extractor_name, extractor_class, extractor_info

    name = canonical_extractor_name(name)
    modality, config_type, version, corpus_fitted = extractor_info(name)
    doc = summary_line(config_type)
    if doc.startswith(config_type.__name__ + "("):  # dataclass's generated signature: the class says more
        doc = summary_line(extractor_class(name))
    return {"name": name, "modality": modality, "version": version, "summary": doc,
            "corpus_fitted": corpus_fitted, "options": options(config_type)}


def render(entry: dict[str, Any]) -> str:
    head = entry["name"]
    if "modality" in entry:
        head += f" ({entry['modality']}" + (f", version {entry['version']})" if "version" in entry else ")")
    lines = [head + f": {entry['summary']}", ""]
    width = max(len(o["key"]) for o in entry["options"])
    for o in entry["options"]:
        tag = "" if o["changes_id"] else "  [runtime: same feature set id]"
        lines.append(f"  {o['key']:<{width}}  {o['type']} = {o['default']!r}  {o['doc']}{tag}")
    return "\n".join(lines)


def markdown_table(config_type: type, runtime_note: bool = True) -> str:
    """The option table of a config as Markdown (docs pages embed it; a test keeps them current)."""
    lines = ["| key | default | what it does |", "|---|---|---|"]
    for o in options(config_type):
        default = o["default"] if not isinstance(o["default"], list) else ",".join(map(str, o["default"]))
        note = " *(runtime: same feature set id)*" if runtime_note and not o["changes_id"] else ""
        doc = o["doc"].replace("|", "\\|")
        lines.append(f"| `{o['key']}` | `{default}` | {doc}{note} |")
    return "\n".join(lines)
