"""``lora-gw diag tx``: transmits within the region's duty cycle and power, refuses beyond with numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway.diag.radio_tx import make_plan
from gateway.diag.setup import load
from tests.diag.radio_util import emulator_config, run, run_json


def toa_sf7_125k_ms(payload: int) -> float:
    """Datasheet formula by hand: CR 4/5, preamble 8, explicit header, CRC on, no LDRO."""
    tsym = 2**7 / 125e3
    n_payload = 8 + max(math.ceil((8 * payload - 4 * 7 + 28 + 16) / (4 * 7)) * 5, 0)
    return (8 + 4.25 + n_payload) * tsym * 1e3


def test_refuses_beyond_the_duty_cycle_with_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    toa = toa_sf7_125k_ms(15)  # the default payload "lora-gw tx test"
    allowed = math.floor(36_000 / toa)  # 1 % of an hour = 36 s
    code, out, err = run(capsys, "diag", "tx", "--emulate", "--count", "1000", "--interval", "1")
    assert code == 2 and out == ""
    assert f"{toa:.1f} ms" in err and f"{allowed} frames/hour" in err and "asked 1000 frames every 1 s" in err
    code, info = run_json(capsys, "diag", "tx", "--emulate", "--count", "1000", "--interval", "1")
    assert code == 2 and info["ok"] is False and "duty cycle" in info["refused"]
    assert info["airtime_ms"] == pytest.approx(toa, abs=1e-3)
    assert info["frames_per_hour_allowed"] == allowed
    assert info["requested"] == {
        "count": 1000,
        "interval_s": 1.0,
        "frames_in_one_hour": 1000,
        "airtime_in_one_hour_s": pytest.approx(1000 * toa / 1e3, abs=1e-3),
    }


def test_sends_what_the_duty_cycle_allows(capsys: pytest.CaptureFixture[str]) -> None:
    code, info = run_json(
        capsys, "diag", "tx", "--emulate", "--count", "4", "--interval", "5", "--payload", "a1b2c3"
    )
    assert code == 0 and info["ok"] is True and info["refused"] is None
    assert [f["n"] for f in info["frames"]] == [1, 2, 3, 4]
    assert [f["t_s"] for f in info["frames"]] == [0.0, 5.0, 10.0, 15.0]
    assert all(f["airtime_ms"] == pytest.approx(toa_sf7_125k_ms(3), abs=1e-3) for f in info["frames"])


def test_the_limit_is_per_sliding_hour_and_per_sub_band(tmp_path: Path) -> None:
    cfg = load(emulator_config(tmp_path))
    toa = toa_sf7_125k_ms(15) / 1e3
    allowed = math.floor(36.0 / toa)
    assert make_plan(cfg.radio, toa, allowed, 1.0, b"x" * 15).refusal is None
    assert "duty cycle" in (make_plan(cfg.radio, toa, allowed + 1, 1.0, b"x" * 15).refusal or "")
    assert make_plan(cfg.radio, toa, 5000, 3600 / allowed, b"x" * 15).refusal is None  # spread over hours
    # 869.4-869.65 MHz allows 500 mW (and 10 %, but [radio] duty_cycle_percent caps EU868 at 1 %)
    cfg_rx2 = load(emulator_config(tmp_path, radio={"frequency_hz": 869_525_000, "tx_power_dbm": 20}))
    plan = make_plan(cfg_rx2.radio, toa, 1, 1.0, b"x" * 15)
    assert plan.refusal is None and plan.rules.max_power_dbm == 27.0
    plan = make_plan(cfg_rx2.radio, toa, allowed + 1, 1.0, b"x" * 15)
    assert "duty cycle" in (plan.refusal or "") and plan.rules.duty_cycle_percent == 1.0
    # 868.7-869.2 MHz: 0.1 %
    cfg_01 = load(emulator_config(tmp_path, radio={"frequency_hz": 868_900_000}))
    assert "0.1 % duty cycle" in (make_plan(cfg_01.radio, toa, allowed, 1.0, b"x" * 15).refusal or "")


def test_power_and_interval_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "diag", "tx", "--config", emulator_config(tmp_path, radio={"tx_power_dbm": 20})
    )
    assert code == 2 and "20 dBm is above the 14 dBm" in err
    code, _, err = run(capsys, "diag", "tx", "--emulate", "--count", "3", "--interval", "0.01")
    assert code == 2 and "shorter than one frame's time on air" in err
    code, _, err = run(capsys, "diag", "tx", "--emulate", "--payload", "xyz")
    assert code == 2 and "--payload" in err


def test_no_duty_cycle_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(
        tmp_path, radio={"region": "US915", "frequency_hz": 915_000_000, "duty_cycle_percent": 100.0}
    )
    code, info = run_json(capsys, "diag", "tx", "--config", cfg, "--count", "20", "--interval", "0.1")
    assert code == 0 and info["frames_per_hour_allowed"] is None and len(info["frames"]) == 20


def test_tx_on_a_dead_chip_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diag", "tx", "--config", emulator_config(tmp_path, fault="chip-unpowered"))
    assert code == 1 and "0xFF" in err
