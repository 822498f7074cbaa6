"""Link advice per node: margins over the demodulator limit and the sensitivity, and the fastest safe SF.

The packet SNR is measured in the channel bandwidth, so it does not depend on the spreading factor:
a node heard at SNR s keeps a margin of s − limit(SF) at any SF. The advice is the fastest SF (7..12)
whose margin is at least 6 dB (the usual rule for a stable link), with what it saves per frame: the
time on air (datasheet formula, the node's median payload) and the node's transmit energy,
ΔT × I_tx × 3.3 V, with I_tx the datasheet's supply current for the next listed power at or above
the configured ``[radio] tx_power_dbm`` (taken as the nodes' power; the gateway cannot know it).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from gateway.diag.radio_monitor import NodeTally
from gateway.radio import regs
from gateway.radio.airtime import time_on_air_s

MARGIN_TARGET_DB = 6.0
ADVISED_SFS = (7, 8, 9, 10, 11, 12)  # SF6 needs implicit headers: not a drop-in change for a node
SUPPLY_V = 3.3
NOISE_FIGURE_DB = 6.0
# SX1276 datasheet table 10, band 1 (HF), dBm. 125 kHz as in the datasheet; the SF8-SF11 values at
# 250 and 500 kHz are unconfirmed against the PDF (the SF7 and SF12 ends are).
SENSITIVITY_DBM: dict[int, dict[int, float]] = {
    125_000: {7: -123, 8: -126, 9: -129, 10: -132, 11: -133, 12: -136},
    250_000: {7: -120, 8: -123, 9: -125, 10: -128, 11: -130, 12: -133},
    500_000: {7: -116, 8: -119, 9: -122, 10: -125, 11: -128, 12: -130},
}
# Supply current in transmit (datasheet table 6, IDDT): (output power dBm, mA).
TX_CURRENT_MA = ((7, 20.0), (13, 29.0), (17, 87.0), (20, 120.0))


def sensitivity_dbm(sf: int, bw_hz: int) -> float:
    """Datasheet sensitivity; other bandwidths: −174 + 10·log10(BW) + NF + SNR limit."""
    table = SENSITIVITY_DBM.get(bw_hz)
    if table is not None and sf in table:
        return float(table[sf])
    return -174.0 + 10 * math.log10(bw_hz) + NOISE_FIGURE_DB + regs.SNR_LIMIT_DB[sf]


def tx_current_ma(tx_power_dbm: float) -> tuple[float, float]:
    """(datasheet power level used, its supply current in mA) for a node transmitting at ``tx_power_dbm``."""
    for dbm, ma in TX_CURRENT_MA:
        if tx_power_dbm <= dbm:
            return float(dbm), ma
    return float(TX_CURRENT_MA[-1][0]), TX_CURRENT_MA[-1][1]


@dataclass(frozen=True, slots=True)
class LinkAdvice:
    node_id: int
    node: str
    packets: int
    sf: int
    bw_hz: int
    snr_db: float
    rssi_dbm: float
    snr_margin_db: float
    rssi_margin_db: float
    advised_sf: int | None  # None: no SF keeps the target margin
    payload_bytes: int
    airtime_ms: float
    advised_airtime_ms: float | None
    current_ma: float

    @property
    def saved_ms(self) -> float | None:
        return None if self.advised_airtime_ms is None else self.airtime_ms - self.advised_airtime_ms

    @property
    def saved_mj(self) -> float | None:
        saved = self.saved_ms
        return None if saved is None else saved / 1e3 * self.current_ma * SUPPLY_V  # s · mA · V = mJ

    @property
    def healthy(self) -> bool:
        return self.snr_margin_db >= MARGIN_TARGET_DB

    def as_dict(self) -> dict:
        return {
            "node_id": self.node_id,
            "node": self.node,
            "packets": self.packets,
            "sf": self.sf,
            "bw_khz": self.bw_hz / 1e3,
            "snr_db": round(self.snr_db, 2),
            "rssi_dbm": round(self.rssi_dbm, 1),
            "snr_limit_db": regs.SNR_LIMIT_DB[self.sf],
            "snr_margin_db": round(self.snr_margin_db, 2),
            "sensitivity_dbm": sensitivity_dbm(self.sf, self.bw_hz),
            "rssi_margin_db": round(self.rssi_margin_db, 1),
            "advised_sf": self.advised_sf,
            "payload_bytes": self.payload_bytes,
            "airtime_ms": round(self.airtime_ms, 3),
            "advised_airtime_ms": None
            if self.advised_airtime_ms is None
            else round(self.advised_airtime_ms, 3),
            "airtime_saved_ms": None if self.saved_ms is None else round(self.saved_ms, 3),
            "energy_saved_mj": None if self.saved_mj is None else round(self.saved_mj, 3),
        }


def fastest_sf(snr_db: float, target_db: float = MARGIN_TARGET_DB) -> int | None:
    for sf in ADVISED_SFS:
        if snr_db - regs.SNR_LIMIT_DB[sf] >= target_db:
            return sf
    return None


def advise(t: NodeTally, preamble: int = 8, tx_power_dbm: float = 14) -> LinkAdvice:
    snr = statistics.fmean(t.snr_db)
    rssi = statistics.fmean(t.rssi_dbm)
    size = round(statistics.median(t.sizes))
    sf = fastest_sf(snr)

    def toa_ms(s: int) -> float:
        return time_on_air_s(size, s, t.bw_hz, t.cr, preamble) * 1e3

    return LinkAdvice(
        node_id=t.node_id,
        node=t.name,
        packets=t.packets,
        sf=t.sf,
        bw_hz=t.bw_hz,
        snr_db=snr,
        rssi_dbm=rssi,
        snr_margin_db=snr - regs.SNR_LIMIT_DB[t.sf],
        rssi_margin_db=rssi - sensitivity_dbm(t.sf, t.bw_hz),
        advised_sf=sf,
        payload_bytes=size,
        airtime_ms=toa_ms(t.sf),
        advised_airtime_ms=None if sf is None else toa_ms(sf),
        current_ma=tx_current_ma(tx_power_dbm)[1],
    )


def assumptions(tx_power_dbm: float) -> dict:
    level, ma = tx_current_ma(tx_power_dbm)
    return {
        "margin_target_db": MARGIN_TARGET_DB,
        "node_tx_power_dbm": tx_power_dbm,
        "tx_current_ma": ma,
        "tx_current_source": f"SX1276 datasheet IDDT at +{level:.0f} dBm",
        "supply_v": SUPPLY_V,
    }
