"""``lora-gw diag link``: margins per node and the fastest SF keeping 6 dB, as the path loss changes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway.radio import regs
from gateway.radio.airtime import time_on_air_s
from tests.diag.radio_util import emulator_config, run, run_json

NOISE_125K = -174 + 10 * math.log10(125e3) + 6


def link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path_loss: float, sf: int = 10
) -> tuple[int, dict]:
    cfg = emulator_config(tmp_path, radio={"sf": sf}, nodes=2, interval_s=20.0, path_loss_db=path_loss)
    return run_json(capsys, "diag", "link", "--config", cfg, "--seconds", "200")


def test_more_path_loss_means_less_margin_and_a_slower_sf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = []
    for loss in (110.0, 128.0, 134.0, 138.0, 141.0):
        _, out = link(tmp_path, capsys, loss)
        assert len(out["nodes"]) == 2
        node = out["nodes"][0]
        snr = min(14 - loss - NOISE_125K, 12.0)  # the SNR estimate saturates near +12 dB
        assert node["snr_db"] == pytest.approx(snr, abs=0.25)
        assert node["snr_margin_db"] == pytest.approx(node["snr_db"] - regs.SNR_LIMIT_DB[10], abs=0.01)
        assert node["rssi_margin_db"] == pytest.approx(
            node["rssi_dbm"] + 132, abs=0.1
        )  # SF10/125 kHz: −132 dBm
        results.append(node)
    margins = [n["snr_margin_db"] for n in results]
    advised = [n["advised_sf"] for n in results]
    assert margins == sorted(margins, reverse=True) and margins[0] > margins[-1] + 10
    assert advised == sorted(advised) and advised[0] == 7 and advised[-1] >= 11
    for node in results:  # the advice is the fastest SF with a 6 dB margin
        sf = node["advised_sf"]
        assert node["snr_db"] - regs.SNR_LIMIT_DB[sf] >= 6
        assert sf == 7 or node["snr_db"] - regs.SNR_LIMIT_DB[sf - 1] < 6


def test_airtime_and_energy_saved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = link(tmp_path, capsys, 110.0)
    assert code == 0 and out["ok"] is True
    node = out["nodes"][0]
    now = time_on_air_s(node["payload_bytes"], 10, 125_000) * 1e3
    fast = time_on_air_s(node["payload_bytes"], 7, 125_000) * 1e3
    assert node["airtime_ms"] == pytest.approx(now, abs=1e-3)
    assert node["airtime_saved_ms"] == pytest.approx(now - fast, abs=1e-3)
    a = out["assumptions"]
    assert (a["tx_current_ma"], a["supply_v"]) == (87.0, 3.3)  # +14 dBm configured → datasheet +17 dBm figure
    assert node["energy_saved_mj"] == pytest.approx((now - fast) / 1e3 * 87.0 * 3.3, abs=1e-3)


def test_thin_margin_fails_with_the_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, radio={"sf": 10}, nodes=1, interval_s=20.0, path_loss_db=141.0)
    code, out, _ = run(capsys, "diag", "link", "--config", cfg, "--seconds", "200")
    assert code == 1
    assert "FAIL: sim-1: SNR margin" in out and "fix: set the node to SF11" in out


def test_no_node_heard_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, nodes=0)
    code, out = run_json(capsys, "diag", "link", "--config", cfg, "--seconds", "10")
    assert code == 1 and out["ok"] is False and out["nodes"] == []
