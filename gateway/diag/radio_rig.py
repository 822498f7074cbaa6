"""The radio a diagnostic talks to: the real SX1276 (spidev + GPIO) or the emulator, behind one face.

Every radio diagnostic goes through the same SPI port and GPIO interfaces the driver uses
(gateway.hw), so on the emulator backend the checks exercise exactly the code paths they exercise on a
Pi. The emulated scenario comes from ``[radio.emulator]`` (nodes, loss, path loss, interferers, the
wiring fault); its clock is virtual and manual, so a 60-second monitor finishes at CPU speed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import ConfigError
from gateway.hw.clock import SYSTEM_CLOCK, Clock, VirtualClock
from gateway.hw.gpio import Gpio, open_gpio
from gateway.hw.spi import SpidevPort
from gateway.radio.air import Link
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import SX1276, LoRaConfig, Pins
from gateway.service.config import Config
from gateway.service.radio import lora_config

log = logging.getLogger(__name__)


@dataclass
class RadioRig:
    """What the checks need: a port factory (any SPI clock), a GPIO opener, the pins and the clock.

    ``sim`` is set on the emulator backend (the gateway chip is ``sim.gateway_chip``).
    """

    clock: Clock
    pins: Pins
    lora: LoRaConfig
    spi_speed_hz: int
    make_spi: Callable[[int], SpidevPort]
    make_gpio: Callable[[], Gpio]
    sim: RadioSim | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _driver: SX1276 | None = None

    @property
    def emulated(self) -> bool:
        return self.sim is not None

    @property
    def virtual_time(self) -> bool:
        return isinstance(self.clock, VirtualClock)

    def driver(self, receive: bool = True) -> SX1276:
        """The gateway's driver, reset, configured per ``[radio]`` and (with ``receive``) receiving."""
        if self._driver is not None:
            return self._driver
        if self.sim is not None:
            drv = self.sim.gateway
        else:
            drv = SX1276(
                self.make_spi(self.spi_speed_hz), self.make_gpio(), self.pins, self.lora, name="sx1276"
            )
            self._closers.append(drv.close)
        drv.begin(receive=receive)
        self._driver = drv
        return drv

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # closing a broken radio must not hide the diagnosis
                log.warning("closing the radio failed: %s", exc)
        self._closers.clear()
        if self.sim is not None:
            self.sim.close()

    def __enter__(self) -> RadioRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spi_bus_cs(device: str) -> tuple[int, int]:
    m = re.fullmatch(r"/dev/spidev(\d+)\.(\d+)", device)
    if m is None:
        raise ConfigError(f"radio.spi_device: {device!r} is not /dev/spidev<bus>.<cs>")
    return int(m.group(1)), int(m.group(2))


def open_rig(cfg: Config, with_nodes: bool = True, begin: bool = True) -> RadioRig:
    """The configured radio. Nothing touches the hardware until a check opens the port or the driver.

    On the emulator, ``with_nodes`` adds the simulated nodes of ``[radio.emulator]``, and ``begin``
    decides whether the gateway's emulated chip is configured by the driver (as a running service
    would have left it) or left as at power-on (for the register-level chip checks).
    """
    r = cfg.radio
    pins = Pins(reset=r.reset_pin, dio0=r.dio0_pin, dio1=r.dio1_pin)
    lora = lora_config(r)
    if r.backend == "emulator":
        e = r.emulator
        sim = RadioSim(
            nodes=e.nodes if with_nodes else 0,
            config=lora,
            link=Link(path_loss_db=e.path_loss_db, loss=e.loss),
            seed=e.seed,
            fault=e.fault,
            interferers=e.interferers,
            pins=pins,
            spi_speed_hz=r.spi_speed_hz,
            begin=False,
        )
        chip = sim.gateway_chip
        gpio = sim.gateway.gpio
        assert gpio is not None
        rig = RadioRig(
            clock=sim.clock,
            pins=pins,
            lora=lora,
            spi_speed_hz=r.spi_speed_hz,
            make_spi=lambda hz: SpidevPort(device_factory=lambda: chip, speed_hz=hz),
            make_gpio=lambda: gpio,
            sim=sim,
        )
        if begin:
            try:
                rig.driver(receive=True)
            except BaseException:
                rig.close()
                raise
        return rig
    bus, cs = spi_bus_cs(r.spi_device)
    return RadioRig(
        clock=SYSTEM_CLOCK,
        pins=pins,
        lora=lora,
        spi_speed_hz=r.spi_speed_hz,
        make_spi=lambda hz: SpidevPort(bus, cs, hz),
        make_gpio=lambda: open_gpio(SYSTEM_CLOCK, r.gpio),
    )
