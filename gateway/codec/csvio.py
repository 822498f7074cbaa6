"""CSV in and out: a header naming the schema's channels, one row per sample in time order.

An optional ``time`` column is carried through untouched by the CLI and ignored by the coder;
other extra columns are ignored too. Blank or non-numeric cells are an error naming the row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

import numpy as np

from gateway.codec.errors import DataError, SchemaError
from gateway.codec.schema import Schema


def read_csv(path: str | Path, schema: Schema) -> tuple[np.ndarray, list[str] | None]:
    """Return (quantised int64 samples × channels, time column or None)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _read(fh, schema, str(path))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def _read(fh: TextIO, schema: Schema, source: str) -> tuple[np.ndarray, list[str] | None]:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{source}: empty file, expected a header row")
    header = [h.strip() for h in header]
    missing = [n for n in schema.names if n not in header]
    if missing:
        raise DataError(f"{source}: header lacks channel(s) {', '.join(missing)}")
    cols = [header.index(n) for n in schema.names]
    tcol = header.index("time") if "time" in header else None
    rows: list[list[float]] = []
    times: list[str] = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            rows.append([float(row[i]) for i in cols])
        except (ValueError, IndexError):
            raise DataError(f"{source}: row {lineno} has a missing or non-numeric value") from None
        if tcol is not None:
            times.append(row[tcol] if tcol < len(row) else "")
    if not rows:
        raise DataError(f"{source}: no data rows")
    arr = np.array(rows, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{source}: row {int(bad[0][0]) + 2} has a value that is not finite")
    try:
        q = schema.quantise(arr)
    except SchemaError as exc:
        raise DataError(f"{source}: {exc.message}") from None
    return q, (times if tcol is not None else None)


def write_csv(path: str | Path, schema: Schema, q: np.ndarray, times: list[str] | None = None) -> None:
    """Write quantised samples at the schema's resolution (with a leading ``time`` column if given)."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow((["time"] if times is not None else []) + list(schema.names))
            for i, row in enumerate(np.asarray(q)):
                cells = schema.format_row(row)
                writer.writerow(([times[i]] if times is not None else []) + cells)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}") from None
