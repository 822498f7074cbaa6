"""The spidev port: mode 0, configurable clock (8 MHz default), one xfer2 per transaction."""

from __future__ import annotations

import pytest

from gateway.errors import HardwareError
from gateway.hw.spi import SpidevPort, SpiPort
from gateway.radio.emulator import EmulatedSX1276


def test_opens_in_mode_0_at_8_mhz_and_counts() -> None:
    chip = EmulatedSX1276()
    chip.mode = 3
    port = SpidevPort(bus=0, cs=1, device_factory=lambda: chip)
    assert isinstance(port, SpiPort)
    port.open()
    assert (chip.mode, chip.max_speed_hz, chip.bits_per_word) == (0, 8_000_000, 8)
    assert (chip.bus, chip.device) == (0, 1)
    assert port.transfer([0x42, 0x00]) == [0x00, 0x12]
    port.transfer([0x0D, 0, 0, 0])
    assert (port.transactions, port.bytes) == (2, 6)
    assert chip.spi_transactions == 2
    port.close()
    with pytest.raises(HardwareError):
        port.transfer([0x42, 0])


def test_clock_is_configurable_within_the_chip_limit() -> None:
    chip = EmulatedSX1276()
    port = SpidevPort(speed_hz=1_000_000, device_factory=lambda: chip)
    port.open()
    assert chip.max_speed_hz == 1_000_000
    with pytest.raises(HardwareError) as err:
        SpidevPort(speed_hz=20_000_000)
    assert err.value.reason == "spi_speed"


def test_missing_device_gets_an_actionable_message() -> None:
    class Missing:
        def open(self, bus: int, cs: int) -> None:
            raise FileNotFoundError(2, "No such file or directory")

    port = SpidevPort(bus=0, cs=0, device_factory=Missing)
    with pytest.raises(HardwareError) as err:
        port.open()
    assert err.value.reason == "spi_open" and "dtparam=spi=on" in err.value.message


def test_trace_level_dumps_the_bytes(caplog: pytest.LogCaptureFixture) -> None:
    chip = EmulatedSX1276()
    port = SpidevPort(device_factory=lambda: chip)
    with caplog.at_level(5, logger="gateway.hw.spi"):  # the level is looked at when the port opens
        port.open()
        port.transfer([0x42, 0x00])
    assert "spi0.0 > 42 00 < 00 12" in caplog.text
