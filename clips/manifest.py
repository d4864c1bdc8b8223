"""Read a generic JSONL or CSV manifest (audio path + labels) into records for the shard writer.

A record is the schema metadata (clips.schema) plus ``audio_path`` (absolute). Columns that are not schema
fields are kept under ``extra`` rather than dropped; missing schema fields are ``None`` (never guessed), except
``id`` (the audio file's stem) and ``dataset`` (the ``dataset`` argument, else the manifest's stem).
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clips.schema import METADATA_FIELDS, OPTIONAL_KEYS, empty_metadata

AUDIO_COLUMNS = ("audio_path", "audio", "path")
FLOAT_FIELDS = ("duration", "valence", "arousal", "dominance")
# The key of a stand-in record for a row that could not be read: the shard writer rejects it with this reason.
MALFORMED = "_malformed_row"


def read_manifest(path: str | os.PathLike, dataset: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield one record per row of a ``.jsonl``/``.json`` (one object a line) or ``.csv`` manifest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    for line_no, row in rows:
        try:
            if isinstance(row, str):  # the reader's own complaint about the line
                raise ValueError(row)
            yield _record(row, path.parent, dataset or path.stem)
        except ValueError as err:
            # one bad row is a reject like an unreadable clip (the writer lists it), not the end of the import
            yield {"id": f"{path.name}:{line_no}", MALFORMED: str(err)}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict | str]]:
    """(line number, the row's object, or what is wrong with the line)."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, f"invalid JSON ({err.msg})"
                continue
            yield line_no, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), 2):
            yield line_no, {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}


def _record(row: dict[str, Any], root: Path, dataset: str) -> dict[str, Any]:
    row = {k: (None if v == "" else v) for k, v in row.items()}
    column = next((c for c in AUDIO_COLUMNS if row.get(c) is not None), None)
    if column is None:
        raise ValueError(f"no audio path (one of the columns {', '.join(AUDIO_COLUMNS)})")
    audio_path = Path(os.path.expanduser(str(row.pop(column))))
    for other in AUDIO_COLUMNS:
        row.pop(other, None)
    record = empty_metadata(id=audio_path.stem, dataset=dataset)
    record["audio_path"] = str(audio_path if audio_path.is_absolute() else (root / audio_path).resolve())
    extra = dict(row.pop("extra", None) or {})
    for key, value in row.items():
        if key in METADATA_FIELDS or key in OPTIONAL_KEYS:
            if value is not None:
                record[key] = _parse(key, value)
        else:
            extra[key] = value
    if extra:
        record["extra"] = extra
    return record


def _parse(key: str, value: Any) -> Any:
    """Numbers from strings, style strings split into lists; a malformed number raises naming the field."""
    if key == "style":
        return [s.strip() for s in re.split(r"[;,]", value) if s.strip()] if isinstance(value, str) else value
    if key in ("id", "speaker", "transcript"):
        return str(value)
    if not isinstance(value, str):
        return value
    try:
        if key in FLOAT_FIELDS:
            return float(value)
        if key == "sample_rate":
            return int(float(value))
    except ValueError:
        raise ValueError(f"field {key!r}: {value!r} is not a number") from None
    return value
