"""Which manifest columns hold the id, the file path or the text, the label and the split: named by the user
(``--columns path=filename``, ``text=title+description`` to join columns), else found under their usual
names (``filename``, ``content``, ``category``...). Without an id column, ids come from the path, or from
a hash of the text (numbered when texts repeat): stable across runs either way."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MmfeatError

ROLES = ("id", "path", "text", "label", "split")
# Usual names of each role's column, in order of preference (the role's own name first).
ALIASES = {
    "id": ("id", "uid", "item_id", "key"),
    "path": ("path", "file", "filename", "file_name", "filepath", "file_path", "fname", "image", "image_path",
             "img", "audio", "audio_path", "wav", "image_file", "audio_file"),
    "text": ("text", "content", "body", "sentence", "document", "review", "utterance", "question"),
    "label": ("label", "labels", "class", "category", "target", "y", "tag", "topic", "class_name"),
    "split": ("split", "fold", "subset", "partition"),
}


def mapped(table: pa.Table, columns: dict[str, str], where: str) -> pa.Table:
    """The manifest with its columns renamed to the roles (id, path or text, label, split); the others
    stay as they are (they become meta). A missing id is derived; a missing path and text is an error
    that lists the columns and says how to name one."""
    names = table.column_names
    chosen = {role: _source_columns(spec, names, where, role) for role, spec in columns.items()}
    for role in ROLES:
        if role not in chosen:
            found = next((c for c in ALIASES[role] if c in names and not _taken(c, chosen)), None)
            if found is not None and not (role == "text" and "path" in chosen):
                chosen[role] = [found]
    if "path" in chosen and "text" in chosen and "path" not in columns and "text" not in columns:
        del chosen["text"]  # a manifest of files with a text-like extra column: the files are the items
    if "path" not in chosen and "text" not in chosen:
        raise MmfeatError(_missing_message(names, where))
    used = {c for cols in chosen.values() for c in cols}
    out = {role: _joined(table, cols) for role, cols in chosen.items()}
    if "id" not in out:
        out["id"] = derived_ids(out.get("path") if "path" in out else out["text"], "path" in out)
    rest = {c: table[c] for c in names if c not in used and c not in ROLES}
    return pa.table({**out, **rest})


def _source_columns(spec: str, names: list[str], where: str, role: str) -> list[str]:
    cols = [c.strip() for c in spec.split("+") if c.strip()]
    missing = [c for c in cols if c not in names]
    if not cols or missing:
        raise MmfeatError(f"{where}: --columns {role}={spec}: no column {', '.join(missing) or spec!r}; "
                          f"columns: {', '.join(names)}")
    if len(cols) > 1 and role != "text":
        raise MmfeatError(f"--columns {role}={spec}: only text joins several columns")
    return cols


def _taken(column: str, chosen: dict[str, list[str]]) -> bool:
    return any(column in cols for cols in chosen.values())


def _joined(table: pa.Table, cols: list[str]) -> pa.ChunkedArray:
    values = [pc.cast(table[c], pa.string()) for c in cols]
    if len(values) == 1:
        return values[0]
    return pc.binary_join_element_wise(*[pc.fill_null(v, "") for v in values], "\n")


def derived_ids(sources: pa.ChunkedArray, is_path: bool) -> pa.Array:
    """Ids for a manifest without an id column: the path itself, or ``t-<hash of the text>`` (``-2``, ``-3``
    for repeats, in row order)."""
    if is_path:
        return pc.cast(sources, pa.string())
    seen: dict[str, int] = {}
    ids = []
    for text in sources.to_pylist():
        digest = hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).hexdigest()[:16]
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(f"t-{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else ""))
    return pa.array(ids, pa.string())


def _missing_message(names: list[str], where: str) -> str:
    hint = ""
    if looks_like_data(names):
        hint = (" The first line looks like data, not a header: pass --no-header (its columns are then c0, c1, "
                "...) and name them, e.g. --columns label=c0 --columns text=c1+c2.")
    return (f"{where}: no column holds the files or the texts (columns: {', '.join(map(repr, names))}). Name it: "
            f"--columns path=COLUMN (files, relative to the manifest) or --columns text=COLUMN.{hint}")


def looks_like_data(names: list[str]) -> bool:
    """Whether a header line looks like a row of values (numbers, sentences) rather than column names."""
    def value_like(name: str) -> bool:
        stripped = name.strip().replace(".", "", 1).replace("-", "", 1)
        return stripped.isdigit() or len(name) > 40 or name.count(" ") >= 3
    return bool(names) and any(value_like(n) for n in names)
