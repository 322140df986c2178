"""Reading manifest files (CSV, JSON lines, Parquet) into Arrow tables of strings, with one-line errors.

Every CSV column is read as a string ("007" stays a speaker id); JSON numbers and booleans become
their text, nested values of extra columns their JSON. A malformed file is one ``MmfeatError`` that
names the line, never a traceback.
"""
from __future__ import annotations

import codecs
import csv
import json
import os
import re

import pyarrow as pa

from ..errors import MmfeatError

_ITEM_COLUMNS = ("id", "path", "text", "label", "split")


def read_manifest(path: str, no_header: bool = False) -> pa.Table:
    """The manifest's rows, every value a string; ``no_header``: a CSV without a header line (c0, c1, ...)."""
    lower = path.lower()
    try:
        if lower.endswith((".csv", ".tsv")):
            table = _read_csv(path, "\t" if lower.endswith(".tsv") else ",", no_header)
        elif lower.endswith((".jsonl", ".ndjson", ".json")):
            table = _read_jsonl(path)
        elif lower.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise MmfeatError(f"unsupported manifest {path}: use .csv, .tsv, .jsonl or .parquet, or a folder")
    except (pa.ArrowInvalid, OSError) as exc:
        raise MmfeatError(f"cannot read manifest {path}: {str(exc).splitlines()[0]}") from None
    if table.num_rows == 0:
        raise MmfeatError(f"{path}: the manifest has no rows")
    return table


def _encoding(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def _read_csv(path: str, delimiter: str, no_header: bool = False) -> pa.Table:
    import pyarrow.csv as pcsv

    encoding = _encoding(path)
    try:
        with open(path, newline="", encoding=encoding) as fh:
            header = next(csv.reader(fh, delimiter=delimiter), [])
    except UnicodeDecodeError as exc:
        raise MmfeatError(f"{path}: not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start})") from None
    if not header:
        raise MmfeatError(f"{path}: empty file (no header line)")
    if no_header:
        header = [f"c{i}" for i in range(len(header))]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        from .columns import looks_like_data

        hint = " (the first line looks like data: pass --no-header)" if looks_like_data(header) else ""
        raise MmfeatError(f"{path}: duplicate column name(s) in the header: {', '.join(dupes)}{hint}")
    size = os.path.getsize(path)
    return pcsv.read_csv(
        path,
        # A block must hold the longest row; newlines inside quoted fields are values, not row ends.
        read_options=pcsv.ReadOptions(encoding="utf-16" if encoding == "utf-16" else "utf8",
                                      block_size=max(1 << 20, min(size + 1, 1 << 30)),
                                      column_names=header if no_header else None),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=True))


def _read_jsonl(path: str) -> pa.Table:
    rows: list[dict] = []
    names: dict[str, None] = {}
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise MmfeatError(f"{path}:{number}: invalid UTF-8 ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MmfeatError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            except RecursionError:
                raise MmfeatError(f"{path}:{number}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise MmfeatError(f"{path}:{number}: a line must be a JSON object, got {type(row).__name__}")
            row = {k: _as_text(v, k, path, number) for k, v in row.items()}
            if any(_surrogate(k) or _surrogate(v) for k, v in row.items()):
                raise MmfeatError(f"{path}:{number}: a lone UTF-16 surrogate (\\ud800-\\udfff) is not text; fix the line")
            rows.append(row)
            names.update(dict.fromkeys(row))
    return pa.table({name: pa.array([r.get(name) for r in rows], pa.string()) for name in names})


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate(value) -> bool:
    return isinstance(value, str) and _SURROGATE.search(value) is not None


def _as_text(value, key: str, path: str, number: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if key in _ITEM_COLUMNS:
        raise MmfeatError(f"{path}:{number}: {key!r} must be a string or a number, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:
        raise MmfeatError(f"{path}:{number}: {key!r} is nested too deeply") from None
