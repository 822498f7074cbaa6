"""The airtime budget: a sliding one-hour window per sub-band, persisted so a restart cannot reset it.

Every transmission (acknowledgement, command, ``diag tx``) asks ``reserve(freq_hz, airtime_s)`` first;
only an allowed one is sent, and it is written to the ledger (SQLite, committed) before it goes on air,
so a restart loop finds every second it spent. The window is kept in wall-clock seconds (the monotonic
clock restarts with the machine); a clock stepping back only makes old entries count longer.

EU868 sub-bands, ETSI EN 300 220-2 V3.2.1 (2018) Table B.1 bands K..Q (summarised in LoRaMac-node
PR #750; the 868.0-868.6 / 868.7-869.2 / 869.4-869.65 MHz limits also in CEPT ERC/REC 70-03 annex 1):
863-865 MHz 0.1 %, 865-868 MHz 1 %, 868.0-868.6 MHz 1 %, 868.7-869.2 MHz 0.1 %, 869.4-869.65 MHz 10 %,
869.7-870 MHz 1 %; the gaps between them (alarm bands) are not ours to use. US915 (FCC 15.247): no
duty cycle but a 400 ms dwell time per transmission. Other regions: one band with the configured
``radio.duty_cycle_percent``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.statedb import transaction

log = logging.getLogger(__name__)

WINDOW_S = 3600.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS dutycycle_ledger (
    id INTEGER PRIMARY KEY,
    band TEXT NOT NULL,
    t_wall REAL NOT NULL,
    airtime_s REAL NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dutycycle_ledger_t ON dutycycle_ledger (t_wall);
"""


@dataclass(frozen=True, slots=True)
class SubBand:
    name: str
    lo_hz: int
    hi_hz: int  # exclusive, except the region's top edge
    duty_percent: float  # 100: no duty-cycle limit
    max_dwell_s: float | None = None


EU868 = (
    SubBand("K 863-865", 863_000_000, 865_000_000, 0.1),
    SubBand("L 865-868", 865_000_000, 868_000_000, 1.0),
    SubBand("M 868.0-868.6", 868_000_000, 868_600_000, 1.0),
    SubBand("N 868.7-869.2", 868_700_000, 869_200_000, 0.1),
    SubBand("P 869.4-869.65", 869_400_000, 869_650_000, 10.0),
    SubBand("Q 869.7-870", 869_700_000, 870_000_001, 1.0),
)
US915 = (SubBand("US915", 902_000_000, 928_000_001, 100.0, 0.4),)


def sub_bands(region: str, duty_percent: float, band: tuple[int, int] | None = None) -> tuple[SubBand, ...]:
    """The sub-band table of ``region``; ``duty_percent`` (the config's) caps every band's duty cycle."""
    if region == "EU868":
        table = EU868
    elif region == "US915":
        table = US915
    else:
        lo, hi = band or (0, 10**10)
        table = (SubBand(region, lo, hi + 1, 100.0),)
    return tuple(
        SubBand(b.name, b.lo_hz, b.hi_hz, min(b.duty_percent, duty_percent), b.max_dwell_s) for b in table
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str  # "ok" | "duty_cycle" | "dwell_time" | "no_sub_band"
    band: str
    detail: str = ""


class DutyCycleLedger:
    """Airtime spent per sub-band in the last hour. One owner thread (it holds a SQLite connection)."""

    def __init__(
        self,
        db: sqlite3.Connection | None,
        bands: tuple[SubBand, ...],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.bands = bands
        self._wall = wall
        self._spent: dict[str, deque[tuple[float, float]]] = {b.name: deque() for b in bands}
        self.dropped = 0
        if db is not None:
            db.executescript(SCHEMA)
            since = wall() - WINDOW_S
            for name, t, air in db.execute(
                "SELECT band, t_wall, airtime_s FROM dutycycle_ledger WHERE t_wall > ? ORDER BY t_wall",
                (since,),
            ):
                if name in self._spent:
                    self._spent[name].append((t, air))
            with transaction(db):
                db.execute("DELETE FROM dutycycle_ledger WHERE t_wall <= ?", (since,))

    def band_of(self, freq_hz: int) -> SubBand | None:
        for b in self.bands:
            if b.lo_hz <= freq_hz < b.hi_hz:
                return b
        return None

    def _prune(self, name: str, now: float) -> deque[tuple[float, float]]:
        q = self._spent[name]
        while q and q[0][0] <= now - WINDOW_S:
            q.popleft()
        return q

    def used_s(self, freq_hz: int) -> float:
        b = self.band_of(freq_hz)
        return 0.0 if b is None else sum(a for _, a in self._prune(b.name, self._wall()))

    def used_percent(self, freq_hz: int) -> float:
        """Share of the hour spent on air in ``freq_hz``'s sub-band (of 100 % of the hour)."""
        return 100.0 * self.used_s(freq_hz) / WINDOW_S

    def check(self, freq_hz: int, airtime_s: float) -> Verdict:
        b = self.band_of(freq_hz)
        if b is None:
            return Verdict(False, "no_sub_band", "", f"{freq_hz / 1e6:.3f} MHz is in no usable sub-band")
        if b.max_dwell_s is not None and airtime_s > b.max_dwell_s:
            return Verdict(
                False,
                "dwell_time",
                b.name,
                f"{airtime_s * 1e3:.0f} ms exceeds {b.max_dwell_s * 1e3:.0f} ms dwell",
            )
        if b.duty_percent >= 100.0:
            return Verdict(True, "ok", b.name)
        budget = WINDOW_S * b.duty_percent / 100.0
        used = sum(a for _, a in self._prune(b.name, self._wall()))
        if used + airtime_s > budget + 1e-9:
            return Verdict(
                False,
                "duty_cycle",
                b.name,
                f"{used:.2f} s + {airtime_s * 1e3:.1f} ms over the {budget:.1f} s per hour"
                f" of {b.duty_percent:g} %",
            )
        return Verdict(True, "ok", b.name)

    def reserve(
        self, freq_hz: int, airtime_s: float, kind: str = "tx", node_id: int | None = None
    ) -> Verdict:
        """Check and, when allowed, record (committed) before the caller transmits. A refusal is counted
        and logged; the caller must then not transmit."""
        v = self.check(freq_hz, airtime_s)
        if not v.allowed:
            self.dropped += 1
            who = "" if node_id is None else f"node {node_id:08x} "
            log.warning("downlink: %s%s dropped, not sent (%s: %s)", who, kind, v.reason, v.detail)
            return v
        now = self._wall()
        self._spent[v.band].append((now, airtime_s))
        if self.db is not None:
            with transaction(self.db):
                self.db.execute(
                    "INSERT INTO dutycycle_ledger (band, t_wall, airtime_s, kind) VALUES (?, ?, ?, ?)",
                    (v.band, now, airtime_s, kind),
                )
        return v


def ledger_for(
    radio, db: sqlite3.Connection | None, wall: Callable[[], float] = time.time
) -> DutyCycleLedger:
    """The ledger for a ``[radio]`` config section (its region, and its duty cycle as the cap)."""
    from gateway.service.config import REGIONS

    return DutyCycleLedger(
        db, sub_bands(radio.region, radio.duty_cycle_percent, REGIONS[radio.region][0]), wall
    )
