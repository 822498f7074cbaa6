"""The emulator's wiring faults, interferers and path loss, against the datasheet's formulas."""

from __future__ import annotations

import math

import pytest

from gateway.errors import ConfigError
from gateway.hw.clock import VirtualClock
from gateway.radio import regs
from gateway.radio.air import Interferer, Link
from gateway.radio.emulator import FAULTS, EmulatedSX1276
from gateway.radio.regs import Irq, Mode, Reg
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig
from gateway.service.config import parse_config


def rd(chip: EmulatedSX1276, reg: int) -> int:
    return chip.xfer2([reg, 0])[1]


def wr(chip: EmulatedSX1276, reg: int, value: int) -> None:
    chip.xfer2([0x80 | reg, value])


def thermal_dbm(bw_hz: float, nf_db: float = 6.0) -> float:
    return -174 + 10 * math.log10(bw_hz) + nf_db


@pytest.fixture
def chip() -> EmulatedSX1276:
    c = EmulatedSX1276(clock=VirtualClock())
    c.open(0, 0)
    return c


@pytest.mark.parametrize(("fault", "level"), [("chip-absent", 0x00), ("chip-unpowered", 0xFF)])
def test_a_missing_chip_reads_one_level_and_ignores_writes(
    chip: EmulatedSX1276, fault: str, level: int
) -> None:
    chip.fault = fault
    assert chip.xfer2([Reg.VERSION, 0, 0]) == [level] * 3
    wr(chip, Reg.PA_RAMP, 0x0F)
    chip.fault = "none"
    assert rd(chip, Reg.VERSION) == regs.CHIP_VERSION
    assert rd(chip, Reg.PA_RAMP) == regs.RESET_COMMON[Reg.PA_RAMP]  # the write never reached the chip


def test_reset_stuck_keeps_the_registers_over_a_reset_pulse(chip: EmulatedSX1276) -> None:
    for fault, expected in (("reset-stuck", 0x0F), ("none", regs.RESET_COMMON[Reg.PA_RAMP])):
        chip.fault = fault
        wr(chip, Reg.PA_RAMP, 0x0F)
        chip.set_reset_pin(False)
        chip.set_reset_pin(True)
        assert rd(chip, Reg.PA_RAMP) == expected, fault


def _cad(chip: EmulatedSX1276) -> None:
    wr(chip, Reg.OP_MODE, 0x80 | Mode.SLEEP)
    wr(chip, Reg.OP_MODE, 0x80 | Mode.STDBY)
    wr(chip, Reg.DIO_MAPPING1, regs.DIO0_CAD_DONE << 6)
    wr(chip, Reg.OP_MODE, 0x80 | Mode.CAD)
    chip.clock.advance(0.01)


def test_no_dio0_sets_the_flag_but_the_line_never_rises(chip: EmulatedSX1276) -> None:
    chip.fault = "no-dio0"
    _cad(chip)
    assert rd(chip, Reg.IRQ_FLAGS) & Irq.CAD_DONE
    assert not chip.dio_level(0)
    chip.fault = "none"  # reconnecting the wire shows the pending interrupt
    assert chip.dio_level(0)


def test_spi_marginal_corrupts_writes_only_above_the_limit(chip: EmulatedSX1276) -> None:
    chip.fault = "spi-marginal"
    chip.max_speed_hz = 8_000_000
    wr(chip, Reg.SYNC_WORD, 0x55)
    assert rd(chip, Reg.VERSION) == 0x12  # reads are clean
    assert rd(chip, Reg.SYNC_WORD) == 0x54
    chip.max_speed_hz = 4_000_000
    wr(chip, Reg.SYNC_WORD, 0x55)
    assert rd(chip, Reg.SYNC_WORD) == 0x55


def test_unknown_fault_is_refused(chip: EmulatedSX1276) -> None:
    with pytest.raises(ValueError, match="unknown emulated fault"):
        chip.fault = "melted"
    assert set(FAULTS) >= {"none", "chip-absent", "chip-unpowered", "no-dio0", "reset-stuck"}


@pytest.mark.parametrize(
    ("freq_hz", "bw_hz", "offset"),
    [(868_100_000, 125_000, -157), (868_100_000, 500_000, -157), (433_175_000, 125_000, -164)],
)
def test_quiet_channel_rssi_register_is_the_thermal_floor(freq_hz: int, bw_hz: int, offset: int) -> None:
    sim = RadioSim(nodes=0, config=LoRaConfig(frequency_hz=freq_hz, bw_hz=bw_hz))
    try:
        assert rd(sim.gateway_chip, Reg.RSSI_VALUE) == round(thermal_dbm(bw_hz) - offset)
        assert sim.gateway.rssi_dbm() == offset + round(thermal_dbm(bw_hz) - offset)
    finally:
        sim.close()


def test_interferer_raises_rssi_only_within_the_bandwidth() -> None:
    carrier = Interferer(freq_hz=868_300_000, rssi_dbm=-90.0)
    for freq, inside in (
        (868_300_000, True),
        (868_250_000, True),
        (868_200_000, False),
        (868_400_000, False),
    ):
        sim = RadioSim(nodes=0, config=LoRaConfig(frequency_hz=freq), interferers=[carrier])
        try:
            total = 10 * math.log10(10 ** (thermal_dbm(125e3) / 10) + (10 ** (-9.0) if inside else 0.0))
            assert rd(sim.gateway_chip, Reg.RSSI_VALUE) == round(total + 157), freq
        finally:
            sim.close()


def _one_packet(path_loss_db: float, interferers: list[Interferer]) -> tuple[object, RadioSim]:
    sim = RadioSim(nodes=1, link=Link(path_loss_db=path_loss_db), interferers=interferers)
    sim.nodes[0].send(b"hello")
    return sim.gateway.receive(timeout_s=1.0), sim


def test_packet_snr_and_rssi_follow_tx_power_path_loss_and_noise() -> None:
    packet, sim = _one_packet(125.0, [])
    sim.close()
    signal = 14 - 125.0  # LoRaConfig default: 14 dBm on PA_BOOST
    assert packet is not None
    assert packet.snr_db == round((signal - thermal_dbm(125e3)) * 4) / 4
    assert abs(packet.rssi_dbm - signal) <= 0.5


def test_interferer_lowers_the_packet_snr_and_then_blocks_reception() -> None:
    signal = 14 - 125.0
    packet, sim = _one_packet(125.0, [Interferer(868_100_000, -105.0)])
    sim.close()
    noise = 10 * math.log10(10 ** (thermal_dbm(125e3) / 10) + 10 ** (-10.5))
    assert packet is not None
    assert packet.snr_db == round((signal - noise) * 4) / 4  # negative: below the noise plus interference
    assert abs(packet.rssi_dbm - signal) <= 0.5  # packet strength with the datasheet's SNR < 0 correction
    packet, sim = _one_packet(125.0, [Interferer(868_100_000, -95.0)])  # SNR ≈ −16 dB < −7.5 dB at SF7
    assert packet is None
    assert sim.air.rx_stats["gateway"]["lost_sensitivity"] == 1
    sim.close()


def test_emulator_config_options_are_validated_naming_the_key() -> None:
    cfg = parse_config(
        {
            "radio": {
                "emulator": {
                    "fault": "no-dio0",
                    "path_loss_db": 130,
                    "interferers": [{"freq_hz": 868_300_000, "rssi_dbm": -90}],
                }
            }
        },
        env={},
    )
    e = cfg.radio.emulator
    assert (e.fault, e.path_loss_db, e.interferers) == ("no-dio0", 130.0, (Interferer(868_300_000, -90.0),))
    bad = [
        ({"fault": "melted"}, "radio.emulator.fault"),
        ({"path_loss_db": 300}, "radio.emulator.path_loss_db"),
        ({"interferers": {"freq_hz": 1}}, "radio.emulator.interferers"),
        ({"interferers": [{"freq_hz": 868_300_000}]}, "radio.emulator.interferers[0]"),
        ({"interferers": [{"freq_hz": 5, "rssi_dbm": -90}]}, "radio.emulator.interferers[0].freq_hz"),
        (
            {"interferers": [{"freq_hz": 868_300_000, "rssi_dbm": -90, "bw": 1}]},
            "radio.emulator.interferers[0].bw",
        ),
    ]
    for table, key in bad:
        with pytest.raises(ConfigError) as info:
            parse_config({"radio": {"emulator": table}}, env={})
        assert info.value.message.startswith(key + ":"), info.value.message
        assert "\n" not in info.value.message
