"""SPI access: a small port interface and its spidev backend.

The driver only ever calls ``transfer`` (one chip-select frame, bytes out, bytes in), so anything
that behaves like ``spidev.SpiDev`` — the real kernel device or the register-level emulator — can
sit behind it. ``spidev`` is imported lazily so the package works on machines without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from gateway.errors import HardwareError

log = logging.getLogger(__name__)

TRACE = 5  # log level for SPI hex dumps (below DEBUG); looked at when the port opens
DEFAULT_SPEED_HZ = 8_000_000
MAX_SPEED_HZ = 10_000_000  # SX1276 SPI clock limit


@runtime_checkable
class SpiPort(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    def transfer(self, data: Sequence[int]) -> list[int]:
        """One transaction with CS held low throughout; returns the bytes clocked in."""
        ...


class SpidevPort:
    """``/dev/spidev<bus>.<cs>`` in mode 0, MSB first, at ``speed_hz`` (default 8 MHz).

    ``device_factory`` builds the SpiDev-like object (default ``spidev.SpiDev``); the emulator's chip
    is passed here in tests and the demo. Counts transactions and bytes for diagnostics.
    """

    def __init__(
        self,
        bus: int = 0,
        cs: int = 0,
        speed_hz: int = DEFAULT_SPEED_HZ,
        device_factory: Callable[[], Any] | None = None,
    ) -> None:
        if not 0 < speed_hz <= MAX_SPEED_HZ:
            raise HardwareError(f"SPI clock {speed_hz} Hz outside 1 Hz..10 MHz (SX1276 limit)", "spi_speed")
        self.bus = bus
        self.cs = cs
        self.speed_hz = speed_hz
        self._factory = device_factory
        self._dev: Any = None
        self.transactions = 0
        self.bytes = 0
        self._trace = False

    def open(self) -> None:
        if self._dev is not None:
            return
        factory = self._factory
        if factory is None:
            try:
                import spidev  # type: ignore[import-not-found]
            except ImportError as exc:
                raise HardwareError(
                    "the spidev module is missing: pip install 'lora-gw[pi]' (or apt install python3-spidev)",
                    "spidev_missing",
                ) from exc
            factory = spidev.SpiDev
        dev = factory()
        try:
            dev.open(self.bus, self.cs)
        except (FileNotFoundError, PermissionError) as exc:
            raise HardwareError(
                f"cannot open /dev/spidev{self.bus}.{self.cs} ({exc.strerror or exc}): enable SPI with "
                "raspi-config (dtparam=spi=on) and check that this user is in the 'spi' group",
                "spi_open",
            ) from exc
        dev.mode = 0
        dev.bits_per_word = 8
        dev.max_speed_hz = self.speed_hz
        self._dev = dev
        self._trace = log.isEnabledFor(TRACE)  # once, not per transaction (the packet path's cost)
        log.debug("SPI bus %d CS %d open at %d Hz", self.bus, self.cs, self.speed_hz)

    def close(self) -> None:
        if self._dev is not None:
            self._dev.close()
            self._dev = None

    def transfer(self, data: Sequence[int]) -> list[int]:
        dev = self._dev
        if dev is None:
            raise HardwareError("SPI port used before open()", "spi_closed")
        self.transactions += 1
        self.bytes += len(data)
        out = dev.xfer2(data)  # spidev takes any sequence and returns a new list
        if self._trace:
            log.log(TRACE, "spi%d.%d > %s < %s", self.bus, self.cs, bytes(data).hex(" "), bytes(out).hex(" "))
        return out
