"""Spectral scan: the noise floor per channel from the chip's instantaneous RSSI (RegRssiValue).

Per channel (field notes, "Instantaneous RSSI"): standby → write Frf → RXCONTINUOUS (the driver's
``configure``), let the receiver settle for 1 ms, then sample RegRssiValue every millisecond for the
dwell time and average the samples as power (mW), not as dB. A quiet 125 kHz channel reads about the
thermal floor plus the noise figure (−117 dBm); a carrier shows up as a peak.

Chip time is measured on the radio's clock; with the emulator (virtual time) the SPI bus time of the
transactions, at the configured SPI clock, is added, as a Pi would spend it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from gateway.diag.radio_rig import RadioRig
from gateway.errors import ConfigError
from gateway.hw.spi import SpidevPort

SETTLE_S = 0.001  # retune, then wait ≥ 1 ms before sampling
SAMPLE_INTERVAL_S = 0.001
DEFAULT_DWELL_MS = 50.0
MAX_CHANNELS = 2000
CHIP_MIN_HZ, CHIP_MAX_HZ = 137_000_000, 1_020_000_000


@dataclass(frozen=True, slots=True)
class Channel:
    freq_hz: int
    rssi_dbm: float
    samples: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    channels: tuple[Channel, ...]
    step_hz: int
    dwell_s: float
    bw_hz: int
    chip_time_s: float

    @property
    def floor_dbm(self) -> float:
        return statistics.median(c.rssi_dbm for c in self.channels)

    @property
    def peak(self) -> Channel:
        return max(self.channels, key=lambda c: c.rssi_dbm)

    def as_dict(self) -> dict:
        peak = self.peak
        return {
            "channels": [
                {"freq_mhz": c.freq_hz / 1e6, "rssi_dbm": round(c.rssi_dbm, 1)} for c in self.channels
            ],
            "step_khz": self.step_hz / 1e3,
            "dwell_ms": self.dwell_s * 1e3,
            "bandwidth_khz": self.bw_hz / 1e3,
            "noise_floor_dbm": round(self.floor_dbm, 1),
            "peak": {"freq_mhz": peak.freq_hz / 1e6, "rssi_dbm": round(peak.rssi_dbm, 1)},
            "chip_time_s": round(self.chip_time_s, 3),
        }


def plan(from_mhz: float, to_mhz: float, step_khz: float, dwell_ms: float) -> list[int]:
    """The channel frequencies (Hz), ``from`` to ``to`` inclusive; ConfigError naming the bad option."""
    if not step_khz > 0:
        raise ConfigError(f"--step: {step_khz:g} kHz must be positive")
    if not 1 <= dwell_ms <= 10_000:
        raise ConfigError(f"--dwell: {dwell_ms:g} ms is outside 1..10000")
    lo, hi = round(from_mhz * 1e6), round(to_mhz * 1e6)
    for opt, hz in (("--from", lo), ("--to", hi)):
        if not CHIP_MIN_HZ <= hz <= CHIP_MAX_HZ:
            raise ConfigError(f"{opt}: {hz / 1e6:g} MHz is outside the SX1276's 137-1020 MHz")
    if hi < lo:
        raise ConfigError(f"--to: {to_mhz:g} MHz is below --from {from_mhz:g} MHz")
    step = round(step_khz * 1e3)
    n = math.floor((hi - lo) / step + 1e-9) + 1
    if n > MAX_CHANNELS:
        raise ConfigError(f"--step: {n} channels is more than {MAX_CHANNELS}; use a larger step")
    return [lo + i * step for i in range(n)]


def scan(rig: RadioRig, freqs: list[int], dwell_ms: float = DEFAULT_DWELL_MS) -> ScanResult:
    """Measure every channel with the configured modem settings; the channel is restored afterwards."""
    drv = rig.driver(receive=True)
    clock = rig.clock
    base = drv.config
    spi = drv.spi
    bytes0 = spi.bytes if isinstance(spi, SpidevPort) else 0
    t0 = clock.monotonic()
    dwell_s = dwell_ms / 1e3
    samples_per_channel = max(1, round(dwell_s / SAMPLE_INTERVAL_S))
    channels = []
    try:
        for freq in freqs:
            drv.configure(dataclasses.replace(base, frequency_hz=freq))
            clock.sleep(SETTLE_S)
            total_mw = 0.0
            for _ in range(samples_per_channel):
                total_mw += 10 ** (drv.rssi_dbm() / 10)
                clock.sleep(SAMPLE_INTERVAL_S)
            channels.append(
                Channel(freq, 10 * math.log10(total_mw / samples_per_channel), samples_per_channel)
            )
    finally:
        drv.configure(base)
    elapsed = clock.monotonic() - t0
    if rig.virtual_time and isinstance(spi, SpidevPort):
        elapsed += (spi.bytes - bytes0) * 8 / spi.speed_hz
    return ScanResult(
        tuple(channels), freqs[1] - freqs[0] if len(freqs) > 1 else 0, dwell_s, base.bw_hz, elapsed
    )
