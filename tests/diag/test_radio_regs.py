"""``lora-gw diag regs``: a dump decoded with the driver's declarations, differences marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.diag.radio_regs import declared_fields, dump
from gateway.diag.radio_rig import open_rig
from gateway.diag.setup import load
from gateway.radio import regs
from gateway.radio.regs import Reg
from tests.diag.radio_util import emulator_config, run, run_json


def test_configured_chip_matches_and_json_carries_every_register(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(capsys, "diag", "regs", "--config", emulator_config(tmp_path, radio={"sf": 9}))
    assert code == 0 and out["ok"] is True and out["differences"] == 0
    rows = {r["name"]: r for r in out["registers"]}
    assert set(rows) == {r.name for r in Reg if r != Reg.FIFO}
    mc2 = rows["MODEM_CONFIG2"]
    assert mc2["address"] == Reg.MODEM_CONFIG2 and mc2["differs"] is False
    fields = {f["name"]: f["value"] for f in mc2["fields"]}
    assert fields["SPREADING_FACTOR"] == 9 == regs.SPREADING_FACTOR.get(mc2["raw"])
    assert rows["VERSION"]["raw"] == 0x12 and rows["VERSION"]["expected"] is None  # read-only: not compared


def test_field_names_come_from_the_register_declarations() -> None:
    fields = declared_fields()
    assert [name for name, _ in fields[Reg.OP_MODE]] == [
        "LONG_RANGE_MODE",
        "ACCESS_SHARED_REG",
        "LOW_FREQUENCY_MODE_ON",
        "MODE",
    ]
    assert {name for name, _ in fields[Reg.MODEM_CONFIG1]} == {"BW", "CODING_RATE", "IMPLICIT_HEADER_MODE_ON"}


def test_a_register_changed_behind_the_drivers_back_is_marked(tmp_path: Path) -> None:
    cfg = load(emulator_config(tmp_path))
    with open_rig(cfg, with_nodes=False, begin=True) as rig:
        assert rig.sim is not None
        chip = rig.sim.gateway_chip
        chip.xfer2([regs.WRITE | Reg.SYNC_WORD, 0x34])  # someone else sets the LoRaWAN sync word
        chip.xfer2(
            [regs.WRITE | Reg.MODEM_CONFIG2, regs.SPREADING_FACTOR.put(chip.peek(Reg.MODEM_CONFIG2), 12)]
        )
        spi = rig.make_spi(rig.spi_speed_hz)
        spi.open()
        result = dump(spi, rig.lora)
    assert [r.name for r in result.differences] == ["MODEM_CONFIG2", "SYNC_WORD"]
    sync = next(r for r in result.rows if r.name == "SYNC_WORD")
    assert (sync.raw, sync.expected) == (0x34, cfg.radio.sync_word)
    mc2 = next(r for r in result.rows if r.name == "MODEM_CONFIG2")
    sf = next(f for f in mc2.fields if f.name == "SPREADING_FACTOR")
    assert (sf.value, sf.expected, sf.differs) == (12, 7, True)
    assert not any(f.differs for f in mc2.fields if f.name != "SPREADING_FACTOR")


def test_text_dump_marks_differences_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diag", "regs", "--config", emulator_config(tmp_path))
    assert code == 0 and "every configuration register matches" in out
    assert "sync_word" in out and "spreading_factor=7" in out
    code, out, err = run(capsys, "diag", "regs", "--config", emulator_config(tmp_path, fault="chip-absent"))
    assert code == 1 and "no SX1276 answers" in err
