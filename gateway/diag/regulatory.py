"""What a region lets the gateway transmit: the duty cycle and power of the sub-band a frequency is in.

EU868 follows ETSI EN 300 220 (sub-bands used by LoRa: 1 % / 0.1 % / 10 % duty cycle, 25 mW ERP
except 500 mW in 869.4-869.65 MHz). Other regions: the band's power limit (FCC part 15.247 1 W
conducted in US915/AU915/IN865, 16 dBm EIRP in AS923, 10 mW ERP in EU433) and the duty cycle of
``gateway.service.config.REGIONS``. Used by the test transmitter and the DIO0 test's transmission.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.service.config import REGIONS, RadioSection


@dataclass(frozen=True, slots=True)
class SubBand:
    lo_hz: int
    hi_hz: int
    duty_cycle_percent: float
    max_power_dbm: float


EU868_SUBBANDS = (
    SubBand(863_000_000, 868_000_000, 1.0, 14.0),
    SubBand(868_000_000, 868_600_000, 1.0, 14.0),
    SubBand(868_700_000, 869_200_000, 0.1, 14.0),
    SubBand(869_400_000, 869_650_000, 10.0, 27.0),
    SubBand(869_700_000, 870_000_000, 1.0, 14.0),
)
REGION_MAX_POWER_DBM = {"EU433": 10.0, "US915": 30.0, "AU915": 30.0, "AS923": 16.0, "IN865": 30.0}


@dataclass(frozen=True, slots=True)
class TxRules:
    """The rules at one frequency: the duty cycle (percent, 100 = none) and the power limit."""

    region: str
    band: str
    duty_cycle_percent: float
    max_power_dbm: float

    def allowed_power(self, tx_power_dbm: float) -> bool:
        return tx_power_dbm <= self.max_power_dbm


def tx_rules(radio: RadioSection, frequency_hz: int | None = None) -> TxRules:
    """Rules at ``frequency_hz`` (default: the configured channel); the config's own duty cycle caps it."""
    freq = radio.frequency_hz if frequency_hz is None else frequency_hz
    region = radio.region
    if region == "EU868":
        for sb in EU868_SUBBANDS:
            if sb.lo_hz <= freq < sb.hi_hz or (freq == sb.hi_hz == 870_000_000):
                duty = min(sb.duty_cycle_percent, radio.duty_cycle_percent)
                band = f"{sb.lo_hz / 1e6:.1f}-{sb.hi_hz / 1e6:.2f} MHz"
                return TxRules(region, band, duty, sb.max_power_dbm)
        # between the sub-bands (868.6-868.7, 869.2-869.4 MHz): the strictest LoRa rule applies
        return TxRules(region, "outside the LoRa sub-bands", min(0.1, radio.duty_cycle_percent), 14.0)
    (lo, hi), _duty = REGIONS[region]
    band = f"{lo / 1e6:.2f}-{hi / 1e6:.2f} MHz"
    return TxRules(region, band, radio.duty_cycle_percent, REGION_MAX_POWER_DBM.get(region, 14.0))


def frames_in_any_hour(count: int, interval_s: float) -> int:
    """Most frames of a train (``count`` frames ``interval_s`` apart) inside one sliding hour."""
    if count <= 1 or interval_s <= 0:
        return max(count, 0)
    return min(count, math.ceil(3600.0 / interval_s))
