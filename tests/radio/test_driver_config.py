"""The driver's configuration registers, checked against datasheet values for a table of settings."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError, HardwareError
from gateway.hw.spi import SpidevPort
from gateway.radio.air import VirtualAir
from gateway.radio.regs import Reg
from gateway.radio.sim import make_radio
from gateway.radio.sx1276 import SX1276, LoRaConfig

CASES = [
    (
        "defaults: 868.1 MHz SF7 125 kHz CR4/5 CRC, 14 dBm PA_BOOST, OCP 100 mA",
        {},
        {
            Reg.OP_MODE: 0x85,
            Reg.FRF_MSB: 0xD9,
            Reg.FRF_MID: 0x06,
            Reg.FRF_LSB: 0x66,
            Reg.MODEM_CONFIG1: 0x72,
            Reg.MODEM_CONFIG2: 0x74,
            Reg.MODEM_CONFIG3: 0x04,
            Reg.PA_CONFIG: 0xFC,
            Reg.PA_DAC: 0x84,
            Reg.OCP: 0x2B,
            Reg.LNA: 0x23,
            Reg.PREAMBLE_MSB: 0x00,
            Reg.PREAMBLE_LSB: 0x08,
            Reg.SYNC_WORD: 0x12,
            Reg.DETECT_OPTIMIZE: 0x43,
            Reg.DETECTION_THRESHOLD: 0x0A,
            Reg.IF_FREQ2: 0x40,
            Reg.IF_FREQ1: 0x00,
            Reg.HIGH_BW_OPTIMIZE1: 0x03,
            Reg.FIFO_TX_BASE_ADDR: 0x00,
            Reg.FIFO_RX_BASE_ADDR: 0x00,
            Reg.DIO_MAPPING1: 0x00,
            Reg.INVERT_IQ: 0x27,
            Reg.INVERT_IQ2: 0x1D,
        },
    ),
    (
        "915 MHz SF12 CR4/8 LDRO auto, LoRaWAN sync word, 20 dBm, OCP 240 mA, preamble 12",
        {
            "frequency_hz": 915_000_000,
            "sf": 12,
            "cr": "4/8",
            "sync_word": 0x34,
            "tx_power_dbm": 20,
            "ocp_ma": 240,
            "preamble": 12,
        },
        {
            Reg.FRF_MSB: 0xE4,
            Reg.FRF_MID: 0xC0,
            Reg.FRF_LSB: 0x00,
            Reg.MODEM_CONFIG1: 0x78,
            Reg.MODEM_CONFIG2: 0xC4,
            Reg.MODEM_CONFIG3: 0x0C,
            Reg.PA_CONFIG: 0xFF,
            Reg.PA_DAC: 0x87,
            Reg.OCP: 0x3B,
            Reg.SYNC_WORD: 0x34,
            Reg.PREAMBLE_LSB: 12,
        },
    ),
    (
        "433 MHz SF9 500 kHz CR4/6, implicit 20 bytes, no CRC (LF port, errata 2.1 low band)",
        {
            "frequency_hz": 433_000_000,
            "sf": 9,
            "bw_hz": 500_000,
            "cr": "4/6",
            "crc": False,
            "implicit_header": True,
            "payload_length": 20,
        },
        {
            Reg.OP_MODE: 0x8D,
            Reg.FRF_MSB: 0x6C,
            Reg.FRF_MID: 0x40,
            Reg.FRF_LSB: 0x00,
            Reg.MODEM_CONFIG1: 0x95,
            Reg.MODEM_CONFIG2: 0x90,
            Reg.PAYLOAD_LENGTH: 20,
            Reg.LNA: 0x20,
            Reg.HIGH_BW_OPTIMIZE1: 0x02,
            Reg.HIGH_BW_OPTIMIZE2: 0x7F,
            Reg.DETECT_OPTIMIZE: 0xC3,
        },
    ),
    (
        "868.1 MHz 500 kHz (errata 2.1 high band)",
        {"bw_hz": 500_000},
        {
            Reg.HIGH_BW_OPTIMIZE1: 0x02,
            Reg.HIGH_BW_OPTIMIZE2: 0x64,
            Reg.DETECT_OPTIMIZE: 0xC3,
            Reg.MODEM_CONFIG1: 0x92,
        },
    ),
    (
        "SF6: implicit header, DetectOptimize 0x05, DetectionThreshold 0x0C",
        {"sf": 6, "implicit_header": True, "payload_length": 8},
        {
            Reg.MODEM_CONFIG2: 0x64,
            Reg.DETECT_OPTIMIZE: 0x45,
            Reg.DETECTION_THRESHOLD: 0x0C,
            Reg.MODEM_CONFIG1: 0x73,
        },
    ),
    (
        "7.8 kHz: errata 2.3 IF 0x48 and RX Frf raised by 7.8 kHz; LDRO auto on (16.4 ms symbols)",
        {"bw_hz": 7800},
        {
            Reg.FRF_MSB: 0xD9,
            Reg.FRF_MID: 0x06,
            Reg.FRF_LSB: 0xE6,
            Reg.IF_FREQ2: 0x48,
            Reg.IF_FREQ1: 0x00,
            Reg.MODEM_CONFIG1: 0x02,
            Reg.MODEM_CONFIG3: 0x0C,
            Reg.DETECT_OPTIMIZE: 0x43,
        },
    ),
    (
        "41.7 kHz: errata IF 0x44",
        {"bw_hz": 41700},
        {Reg.IF_FREQ2: 0x44, Reg.MODEM_CONFIG1: 0x52, Reg.MODEM_CONFIG3: 0x04},
    ),
    (
        "SF11 125 kHz with LDRO forced off (arduino-LoRa nodes), AGC off, LNA gain 3",
        {"sf": 11, "ldro": "off", "agc": False, "lna_gain": 3},
        {Reg.MODEM_CONFIG2: 0xB4, Reg.MODEM_CONFIG3: 0x00, Reg.LNA: 0x63},
    ),
    (
        "IQ inverted on receive and transmit",
        {"invert_iq_rx": True, "invert_iq_tx": True},
        {Reg.INVERT_IQ: 0x66, Reg.INVERT_IQ2: 0x19},
    ),
    (
        "RFO at 10 dBm, OCP 150 mA",
        {"pa_boost": False, "tx_power_dbm": 10, "ocp_ma": 150},
        {Reg.PA_CONFIG: 0x7A, Reg.OCP: 0x32, Reg.PA_DAC: 0x84},
    ),
]


@pytest.mark.parametrize(("title", "settings", "expected"), CASES, ids=[c[0].split(":")[0] for c in CASES])
def test_configuration_registers(title: str, settings: dict, expected: dict) -> None:
    air = VirtualAir()
    chip, _, radio = make_radio(air, "gw", LoRaConfig(**settings))
    radio.begin()
    assert {Reg(r).name: chip.peek(r) for r in expected} == {Reg(r).name: v for r, v in expected.items()}


def test_reconfigure_while_receiving_keeps_receiving() -> None:
    air = VirtualAir()
    chip, _, radio = make_radio(air, "gw", LoRaConfig())
    radio.begin()
    radio.configure(LoRaConfig(sf=10, frequency_hz=915_000_000))
    assert chip.peek(Reg.MODEM_CONFIG2) == 0xA4 and chip.peek(Reg.FRF_MSB) == 0xE4
    assert chip.peek(Reg.OP_MODE) == 0x85


@pytest.mark.parametrize(
    "settings",
    [
        {"sf": 6},  # SF6 needs implicit header
        {"sf": 13},
        {"bw_hz": 100_000},
        {"cr": "4/9"},
        {"frequency_hz": 2_400_000_000},
        {"tx_power_dbm": 18},
        {"pa_boost": False, "tx_power_dbm": 17},
        {"ldro": "sometimes"},
        {"sync_word": 0x100},
        {"ocp_ma": 20},
    ],
)
def test_invalid_settings_raise_config_error(settings: dict) -> None:
    with pytest.raises(ConfigError) as err:
        LoRaConfig(**settings)
    assert err.value.reason == "radio_config" and err.value.message.startswith("radio:")


def test_silent_chip_gets_one_actionable_line() -> None:
    air = VirtualAir()
    chip = air.add_radio("dead")
    chip.set_reset_pin(False)  # held in reset: MISO stays low, as with SPI disabled or CS miswired
    radio = SX1276(SpidevPort(device_factory=lambda: chip), gpio=None, clock=air.clock)
    with pytest.raises(HardwareError) as err:
        radio.begin()
    assert err.value.reason == "no_chip"
    assert "0x00" in err.value.message and "dtoverlay=spi0-cs,cs0_pin=25" in err.value.message
    assert "\n" not in err.value.message


def test_floating_miso_reads_ff_and_is_reported() -> None:
    class Floating:
        """MISO pulled high: every byte reads 0xFF."""

        def open(self, bus: int, cs: int) -> None: ...

        def xfer2(self, data: list[int]) -> list[int]:
            return [0xFF] * len(data)

        def close(self) -> None: ...

    radio = SX1276(SpidevPort(device_factory=Floating), gpio=None)
    with pytest.raises(HardwareError) as err:
        radio.begin()
    assert err.value.reason == "no_chip" and "0xFF" in err.value.message
