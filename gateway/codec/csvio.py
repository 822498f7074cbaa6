"""CSV in and out: a header naming the schema's channels, one row per sample in time order.

Reading accepts a UTF-8 byte-order mark (spreadsheets write one). An optional ``time`` column is
carried through untouched (``model encode`` stores it in the frames file, ``model decode`` writes it
back) and ignored by the coder; other extra columns are ignored too, but a row with more (or fewer)
cells than the header is an error, as are blank or non-numeric cells. A value outside its channel's
``min``..``max`` or off its ``step`` grid is refused, naming the row and channel, unless the caller
asks to clip (range) or round (grid); those are counted in :class:`CsvData`. Writing uses ``\\n`` line
endings. The path ``-`` means standard input or output.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from gateway.codec.errors import DataError, SchemaError
from gateway.codec.schema import Schema

#: A value is on the grid when value / step is within this many steps of an integer (float noise:
#: 1013.2 / 0.1 = 10132.000000000002).
GRID_TOLERANCE = 1e-6
STDIO = "-"


@dataclass(frozen=True, slots=True)
class CsvData:
    """Quantised samples (int64, samples × channels), the ``time`` cells if the file had that column,
    and how many values were clipped into range or rounded onto the step grid on request."""

    q: np.ndarray
    times: list[str] | None
    clipped: int = 0
    rounded: int = 0


def read_csv(path: str | Path, schema: Schema) -> tuple[np.ndarray, list[str] | None]:
    """Return (quantised int64 samples × channels, time column or None); strict about range and grid."""
    data = load_csv(path, schema)
    return data.q, data.times


def load_csv(path: str | Path, schema: Schema, *, clip: bool = False, round_: bool = False) -> CsvData:
    """Read a CSV (``-``: standard input). ``clip``: clip values outside a channel's min..max and count
    them instead of refusing; ``round_``: round values off the step grid to the nearest step and count."""
    source = "standard input" if str(path) == STDIO else str(path)
    try:
        if str(path) == STDIO:
            text = sys.stdin.buffer.read().decode("utf-8-sig")
            return _read(io.StringIO(text, newline=""), schema, source, clip, round_)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _read(fh, schema, source, clip, round_)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{source}: not a valid CSV file ({exc})") from None


def read_header(
    reader: Iterator[list[str]], schema: Schema, source: str
) -> tuple[list[str], list[int], int | None]:
    """The header row: its names, the column of each channel, and the ``time`` column (or None)."""
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise DataError(f"{source}: empty file, expected a header row")
    header = [h.strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1 and h})
    if dup:
        raise DataError(f"{source}: header names column(s) {', '.join(dup)} more than once")
    missing = [n for n in schema.names if n not in header]
    if missing:
        raise DataError(f"{source}: header lacks channel(s) {', '.join(missing)}")
    return header, [header.index(n) for n in schema.names], header.index("time") if "time" in header else None


def _read(fh: TextIO, schema: Schema, source: str, clip: bool, round_: bool) -> CsvData:
    reader = csv.reader(fh)
    header, cols, tcol = read_header(reader, schema, source)
    rows: list[list[float]] = []
    linenos: list[int] = []
    times: list[str] = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"{source}: row {lineno} has {len(row)} cells, the header names {len(header)} columns"
            )
        try:
            rows.append([float(row[i]) for i in cols])
        except ValueError:
            raise DataError(f"{source}: row {lineno} has a missing or non-numeric value") from None
        linenos.append(lineno)
        if tcol is not None:
            times.append(row[tcol])
    if not rows:
        raise DataError(f"{source}: no data rows")
    arr = np.array(rows, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{source}: row {linenos[int(bad[0][0])]} has a value that is not finite")
    try:
        q = schema.quantise(arr)
    except SchemaError as exc:
        raise DataError(f"{source}: {exc.message}") from None
    off = np.abs(arr / schema.steps - q) > GRID_TOLERANCE
    rounded = int(off.sum())
    if rounded and not round_:
        r, c = (int(v) for v in np.argwhere(off)[0])
        ch = schema.channels[c]
        raise DataError(
            f"{source}: row {linenos[r]}, {ch.name}: {float(arr[r, c])!r} is not a multiple of the step "
            f"{ch.step:g} ({rounded} such value(s); --round rounds them to the nearest step)"
        )
    lo = np.array([-math.inf if c.qmin is None else c.qmin for c in schema.channels])
    hi = np.array([math.inf if c.qmax is None else c.qmax for c in schema.channels])
    out = (q < lo) | (q > hi)
    clipped = int(out.sum())
    if clipped and not clip:
        r, c = (int(v) for v in np.argwhere(out)[0])
        ch = schema.channels[c]
        raise DataError(
            f"{source}: row {linenos[r]}, {ch.name}: {float(arr[r, c])!r} is outside the schema's range "
            f"{_bound(ch.min)}..{_bound(ch.max)} ({clipped} such value(s); --clip clips them to the range)"
        )
    if clipped:
        q = np.clip(q, lo, hi).astype(np.int64)
    return CsvData(q, times if tcol is not None else None, clipped, rounded)


def _bound(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


@contextmanager
def _output(path: str | Path) -> Iterator[TextIO]:
    if str(path) == STDIO:
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", newline="", encoding="utf-8") as fh:
        yield fh


def write_csv(path: str | Path, schema: Schema, q: np.ndarray, times: list[str] | None = None) -> None:
    """Write quantised samples at the schema's resolution (with a leading ``time`` column if given),
    ``\\n`` line endings; ``-`` writes to standard output."""
    q = np.asarray(q)
    if times is not None and len(times) != len(q):
        raise DataError(f"{len(times)} time values for {len(q)} samples")
    try:
        with _output(path) as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow((["time"] if times is not None else []) + list(schema.names))
            for i, row in enumerate(q):
                cells = schema.format_row(row)
                writer.writerow(([times[i]] if times is not None else []) + cells)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}") from None
