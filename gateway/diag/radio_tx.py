"""Test transmitter that keeps to the region's rules: duty cycle per sliding hour, and power.

Before anything goes on air the request is checked: the frame's time on air (datasheet formula), the
frames a duty cycle allows per hour (``airtime.packets_per_hour``) against the most frames of the
requested train that fall in any one hour, the interval against the time on air, and the configured
power against the sub-band's limit. A refusal carries every number, so the installer sees why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.diag.radio_rig import RadioRig
from gateway.diag.regulatory import TxRules, frames_in_any_hour, tx_rules
from gateway.errors import ConfigError, HardwareError
from gateway.radio.airtime import packets_per_hour
from gateway.service.config import RadioSection

DEFAULT_PAYLOAD = b"lora-gw tx test"
MAX_COUNT = 100_000


@dataclass(frozen=True, slots=True)
class TxPlan:
    count: int
    interval_s: float
    payload: bytes
    airtime_s: float
    rules: TxRules
    tx_power_dbm: int
    frames_per_hour_allowed: int | None  # None: no duty-cycle limit
    frames_in_hour: int
    refusal: str | None

    def as_dict(self) -> dict:
        return {
            "region": self.rules.region,
            "band": self.rules.band,
            "duty_cycle_percent": self.rules.duty_cycle_percent,
            "max_power_dbm": self.rules.max_power_dbm,
            "tx_power_dbm": self.tx_power_dbm,
            "payload_bytes": len(self.payload),
            "airtime_ms": round(self.airtime_s * 1e3, 3),
            "frames_per_hour_allowed": self.frames_per_hour_allowed,
            "requested": {
                "count": self.count,
                "interval_s": self.interval_s,
                "frames_in_one_hour": self.frames_in_hour,
                "airtime_in_one_hour_s": round(self.frames_in_hour * self.airtime_s, 3),
            },
            "refused": self.refusal,
        }


@dataclass
class TxResult:
    plan: TxPlan
    sent: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.sent) == self.plan.count

    def as_dict(self) -> dict:
        return {"ok": self.ok, **self.plan.as_dict(), "frames": self.sent, "error": self.error}


def parse_payload(text: str | None) -> bytes:
    if text is None:
        return DEFAULT_PAYLOAD
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"--payload: {text!r} is not hex (e.g. 48656c6c6f)") from None
    if not 1 <= len(data) <= 255:
        raise ConfigError(f"--payload: {len(data)} bytes is outside 1..255")
    return data


def make_plan(radio: RadioSection, airtime_s: float, count: int, interval_s: float, payload: bytes) -> TxPlan:
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"--count: {count} is outside 1..{MAX_COUNT}")
    if interval_s < 0:
        raise ConfigError(f"--interval: {interval_s:g} s is negative")
    rules = tx_rules(radio)
    duty = rules.duty_cycle_percent / 100.0
    allowed = packets_per_hour(airtime_s, duty) if 0 < duty < 1 else (None if duty >= 1 else 0)
    in_hour = frames_in_any_hour(count, interval_s)
    refusal = None
    ms = airtime_s * 1e3
    if not rules.allowed_power(radio.tx_power_dbm):
        refusal = (
            f"tx_power_dbm {radio.tx_power_dbm} dBm is above the {rules.max_power_dbm:.0f} dBm allowed in"
            f" {rules.region} {rules.band}"
        )
    elif count > 1 and interval_s < airtime_s:
        refusal = f"--interval {interval_s:g} s is shorter than one frame's time on air ({ms:.1f} ms)"
    elif allowed is not None and in_hour > allowed:
        refusal = (
            f"{count} frames every {interval_s:g} s puts {in_hour} frames"
            f" ({in_hour * airtime_s:.1f} s on air) in one hour; the {rules.duty_cycle_percent:g} %"
            f" duty cycle of {rules.region} {rules.band}"
            f" allows {allowed} frames of {ms:.1f} ms ({3600 * duty:.1f} s) per hour"
        )
    return TxPlan(count, interval_s, payload, airtime_s, rules, radio.tx_power_dbm, allowed, in_hour, refusal)


def transmit(rig: RadioRig, plan: TxPlan, ledger=None) -> TxResult:
    """Send the planned frames (call only when ``plan.refusal`` is None). ``ledger``: the duty-cycle
    budget (gateway.downlink.dutycycle) every frame is charged to first; over budget, the train stops."""
    if plan.refusal is not None:
        raise ValueError("a refused plan is not transmitted")
    drv = rig.driver(receive=True)
    clock = rig.clock
    result = TxResult(plan)
    start = clock.monotonic()
    for n in range(plan.count):
        due = start + n * plan.interval_s
        if (wait := due - clock.monotonic()) > 0:
            clock.sleep(wait)
        t0 = clock.monotonic()
        if ledger is not None:
            verdict = ledger.reserve(drv.config.frequency_hz, plan.airtime_s, "diag tx")
            if not verdict.allowed:
                result.error = f"frame {n + 1} not sent: over the duty-cycle budget ({verdict.detail})"
                break
        try:
            toa = drv.transmit(plan.payload, wait=True)
        except HardwareError as exc:
            result.error = exc.message
            break
        result.sent.append(
            {"n": n + 1, "t_s": round(t0 - start, 3), "airtime_ms": round(toa * 1e3, 3), "tx_done": True}
        )
    return result
