"""CSV packet log with daily rotation, like Semtech's ``util_pkt_logger`` (which starts a file per hour).

``--csv /var/log/lora/packets.csv`` writes ``packets-2026-12-01.csv`` and moves to the next file
when the UTC date changes; an existing day's file is appended to (a restarted monitor continues it)
and a new file starts with the header row.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import TextIO

from gateway.diag.radio_monitor import PacketRow

COLUMNS = (
    "utc",
    "freq_mhz",
    "sf",
    "bw_khz",
    "cr",
    "crc",
    "rssi_dbm",
    "snr_db",
    "freq_error_hz",
    "size",
    "node_id",
    "node",
    "fcnt",
    "verdict",
    "payload_hex",
)


def dated_path(base: Path, day: date) -> Path:
    return base.with_name(f"{base.stem}-{day.isoformat()}{base.suffix or '.csv'}")


class DailyCsv:
    def __init__(self, base: str | Path) -> None:
        self.base = Path(base)
        self.path: Path | None = None
        self._day: date | None = None
        self._fh: TextIO | None = None
        self._writer: csv.writer | None = None  # type: ignore[valid-type]
        self.files: list[Path] = []

    def write(self, row: PacketRow) -> None:
        day = row.utc.date()
        if day != self._day:
            self._open(day)
        assert self._writer is not None and self._fh is not None
        self._writer.writerow(
            [
                row.utc.isoformat(timespec="milliseconds"),
                f"{row.freq_hz / 1e6:.6f}",
                row.sf,
                f"{row.bw_hz / 1e3:g}",
                row.cr,
                row.crc,
                f"{row.rssi_dbm:.1f}",
                f"{row.snr_db:.2f}",
                f"{row.freq_error_hz:.0f}",
                len(row.payload),
                "" if row.node_id is None else f"0x{row.node_id:x}",
                row.node,
                "" if row.fcnt is None else row.fcnt,
                row.verdict,
                row.payload.hex(),
            ]
        )
        self._fh.flush()

    def _open(self, day: date) -> None:
        self.close()
        path = dated_path(self.base, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(COLUMNS)
        self._day, self.path = day, path
        self.files.append(path)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
