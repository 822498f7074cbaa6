"""``lora-gw diag chip`` and ``radio_checks``: each emulated wiring fault fails exactly its check."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.diag.radio import CHECK_NAMES, radio_checks
from gateway.diag.setup import load
from tests.diag.radio_util import emulator_config, run, run_json

FAULT_CHECK = {
    "chip-absent": "chip_version",
    "chip-unpowered": "chip_version",
    "no-dio0": "dio0_irq",
    "reset-stuck": "chip_reset",
    "spi-marginal": "spi_link",
}


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_healthy_emulator_passes_all_four(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "diag", "chip", "--config", emulator_config(tmp_path))
    assert code == 0 and report["ok"] is True
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert all(c["ok"] is True for c in report["checks"])
    assert "0x12" in by_name(report)["chip_version"]["detail"]


def test_emulate_flag_gives_a_healthy_chip(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diag", "chip", "--emulate")
    assert code == 0
    assert out.splitlines()[-1] == "4 checks, all fine"
    assert "\033[" not in out  # no colour when stdout is not a terminal


@pytest.mark.parametrize("fault", sorted(FAULT_CHECK))
def test_each_fault_fails_exactly_its_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    code, report = run_json(capsys, "diag", "chip", "--config", emulator_config(tmp_path, fault=fault))
    assert code == 1 and report["ok"] is False
    failed = [c for c in report["checks"] if c["ok"] is False]
    assert [c["name"] for c in failed] == [FAULT_CHECK[fault]]
    assert failed[0]["cause"] and failed[0]["fix"]
    assert all(c["ok"] in (True, None) for c in report["checks"] if c["name"] != FAULT_CHECK[fault])


def test_fault_causes_and_fixes_name_the_wiring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen = {}
    for fault in ("chip-absent", "chip-unpowered", "no-dio0", "reset-stuck", "spi-marginal"):
        _, report = run_json(capsys, "diag", "chip", "--config", emulator_config(tmp_path, fault=fault))
        seen[fault] = by_name(report)[FAULT_CHECK[fault]]
    assert "0x00" in seen["chip-absent"]["detail"] and "chip-select" in seen["chip-absent"]["cause"]
    assert "dtoverlay=spi0-cs" in seen["chip-absent"]["fix"]
    assert "0xFF" in seen["chip-unpowered"]["detail"] and "MISO" in seen["chip-unpowered"]["cause"]
    assert "GPIO4" in seen["no-dio0"]["cause"] and "dio0_pin" in seen["no-dio0"]["fix"]
    assert "GPIO17" in seen["reset-stuck"]["cause"] and "reset_pin" in seen["reset-stuck"]["fix"]
    assert (
        "4 MHz" in seen["spi-marginal"]["detail"] and "spi_speed_hz = 4000000" in seen["spi-marginal"]["fix"]
    )


def test_text_output_prints_cause_and_fix_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diag", "chip", "--config", emulator_config(tmp_path, fault="reset-stuck"))
    assert code == 1
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("FAIL") and "chip_reset" in line)
    assert "cause:" in lines[i + 1] and "fix:" in lines[i + 2]


def test_configured_pins_are_the_ones_tested(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, radio={"reset_pin": 25, "dio0_pin": 22})
    code, report = run_json(capsys, "diag", "chip", "--config", cfg)
    assert code == 0
    assert "GPIO25" in by_name(report)["chip_reset"]["detail"]
    assert "GPIO22" in by_name(report)["dio0_irq"]["detail"]


def test_dio0_not_wired_is_skipped_not_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(
        capsys, "diag", "chip", "--config", emulator_config(tmp_path, radio={"dio0_pin": False})
    )
    assert code == 0 and report["ok"] is True
    assert by_name(report)["dio0_irq"]["ok"] is None


def test_dio0_by_transmission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(
        capsys, "diag", "chip", "--dio0-test", "tx", "--config", emulator_config(tmp_path)
    )
    assert code == 0 and "TxDone" in by_name(report)["dio0_irq"]["detail"]
    cfg = emulator_config(tmp_path, fault="no-dio0")
    code, report = run_json(capsys, "diag", "chip", "--dio0-test", "tx", "--config", cfg)
    assert code == 1 and by_name(report)["dio0_irq"]["ok"] is False


def test_dio0_transmission_skipped_when_the_power_is_not_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = emulator_config(tmp_path, radio={"tx_power_dbm": 20})  # EU868 868.1 MHz: 25 mW (14 dBm)
    code, report = run_json(capsys, "diag", "chip", "--dio0-test", "tx", "--config", cfg)
    check = by_name(report)["dio0_irq"]
    assert code == 0 and check["ok"] is None
    assert "warning" in check["detail"] and "14 dBm" in check["detail"]
    assert any("dio0_irq skipped" in r.getMessage() for r in caplog.records)


def test_radio_checks_is_the_doctor_entry_point(tmp_path: Path) -> None:
    checks = radio_checks(load(emulator_config(tmp_path, fault="chip-unpowered")))
    assert [(c.name, c.ok) for c in checks] == [
        ("chip_version", False),
        ("spi_link", None),
        ("chip_reset", None),
        ("dio0_irq", None),
    ]


def test_real_backend_without_spi_fails_chip_version_quickly(tmp_path: Path) -> None:
    path = tmp_path / "real.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[radio]\nspi_device = "/dev/spidev9.9"\n')
    checks = radio_checks(load(str(path)))
    assert checks[0].name == "chip_version" and checks[0].ok is False
    assert "spi" in checks[0].fix
    assert [c.ok for c in checks[1:]] == [None, None, None]
