"""A ready-made radio scenario: one gateway SX1276 and N nodes on a virtual air.

Every radio is the real ``SX1276`` driver over its own register-level ``EmulatedSX1276`` chip and
fake GPIO board (RESET on BCM 17, DIO0 on BCM 4), so the demo, service tests and benchmarks
exercise the same code as on a Raspberry Pi.

    from gateway.radio.sim import RadioSim, Link
    sim = RadioSim(nodes=3)                       # 868.1 MHz, SF7, 125 kHz, CR 4/5, CRC on
    sim.nodes[0].send(b"hello")                   # node 0 transmits through its driver (blocks
                                                  # until TxDone, in virtual time); returns ToA in s
    packet = sim.gateway.receive(timeout_s=1.0)   # -> RxPacket | None (sim.gateway is an SX1276)
    sim.set_link(1, Link(path_loss_db=120, loss=0.1, bit_error_rate=1e-4))
    sim.send_at(sim.clock.monotonic() + 0.5, 2, b"later")   # schedule a send (non-blocking)
    sim.air.rx_stats["gateway"]                   # fate of every frame at the gateway (Counter)
    sim.close()

Arguments of ``RadioSim``: ``nodes`` (count), ``config`` (LoRaConfig for every radio; nodes may
get their own via ``add_node(config=...)``), ``link`` (default Link for every node ↔ gateway
path), ``seed`` (loss/bit-error randomness), ``speed`` and ``clock``; for field diagnostics also
``fault`` (a wiring fault of the gateway's chip, see ``emulator.FAULTS``), ``interferers``
(continuous carriers on the air), ``pins`` (the gateway's RESET/DIO0 wiring) and ``begin`` (False
leaves the gateway's chip untouched after power-on, for tests that probe it at register level).

Time: by default a manual ``VirtualClock`` — time moves only while someone waits on it
(``receive``, ``send``, ``clock.advance``), so single-threaded scripts run as fast as the CPU allows.
When the gateway is read from another thread, pass ``speed`` (e.g. 20.0): virtual time then runs at
that multiple of real time, a timer thread fires chip and air events on time, and every thread may
sleep or wait on it safely. (In that mode do not mix ``send_at`` and direct ``send`` on one node.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from gateway.hw.clock import VirtualClock
from gateway.hw.gpio import GpiodGpio, RPiGpio
from gateway.hw.spi import SpidevPort
from gateway.radio.air import Interferer, Link, VirtualAir
from gateway.radio.emulator import EmulatedSX1276, FakeGPIO, FakeGpiod, SpiBoard
from gateway.radio.packet import RxPacket
from gateway.radio.sx1276 import SX1276, LoRaConfig, Pins

__all__ = ["Interferer", "Link", "LoRaConfig", "RadioSim", "RxPacket", "SimNode", "VirtualClock"]

log = logging.getLogger(__name__)

RESET_PIN = 17
DIO0_PIN = 4
DIO1_PIN = 5


@dataclass(eq=False)
class SimNode:
    """One emulated node: its chip, its GPIO board and the SX1276 driver that drives it."""

    name: str
    chip: EmulatedSX1276
    gpio: FakeGPIO
    radio: SX1276

    def send(self, payload: bytes, wait: bool = True) -> float:
        """Transmit ``payload`` through the driver; returns the time on air in seconds."""
        return self.radio.transmit(payload, wait=wait)

    @property
    def busy(self) -> bool:
        """Still transmitting the previous frame."""
        return self.chip.op_mode == 3  # TX


def make_radio(
    air: VirtualAir,
    name: str,
    config: LoRaConfig,
    gpio_backend: str = "rpi",
    use_dio0: bool = True,
    pins: Pins | None = None,
    spi_speed_hz: int = 8_000_000,
) -> tuple[EmulatedSX1276, FakeGPIO, SX1276]:
    """An emulated chip on ``air`` wired to a fake GPIO board, and an SX1276 driver over both.

    ``pins`` is the wiring (default RESET 17, DIO0 4); a pin that is None is not connected.
    """
    chip = air.add_radio(name)
    board = FakeGPIO()
    if pins is None:
        pins = Pins(reset=RESET_PIN, dio0=DIO0_PIN if use_dio0 else None, dio1=None)
        dio_pins = {0: DIO0_PIN, 1: DIO1_PIN}
    else:
        dio_pins = {i: p for i, p in ((0, pins.dio0), (1, pins.dio1)) if p is not None}
    chip.wire(board, pins.reset, dio_pins)
    if gpio_backend == "gpiod":
        backend = GpiodGpio(module=FakeGpiod(board, air.clock), candidates=["/dev/gpiochip0"])
    else:
        backend = RPiGpio(air.clock, module=board)
    spi = SpidevPort(0, 0, speed_hz=spi_speed_hz, device_factory=SpiBoard({(0, 0): chip}).SpiDev)
    driver = SX1276(spi, backend, pins, config, clock=air.clock, name=name)
    return chip, board, driver


class RadioSim:
    """A gateway radio and ``nodes`` node radios on one ``VirtualAir`` (see the module docstring)."""

    def __init__(
        self,
        nodes: int = 1,
        config: LoRaConfig | None = None,
        link: Link | None = None,
        seed: int = 0,
        speed: float | None = None,
        clock: VirtualClock | None = None,
        gpio_backend: str = "rpi",
        use_dio0: bool = True,
        fault: str = "none",
        interferers: tuple[Interferer, ...] | list[Interferer] = (),
        pins: Pins | None = None,
        spi_speed_hz: int = 8_000_000,
        begin: bool = True,
    ) -> None:
        self._own_clock = clock is None
        self.clock = clock or VirtualClock(speed=speed)
        self.config = config or LoRaConfig()
        self.air = VirtualAir(self.clock, seed=seed, default_link=link or Link(), interferers=interferers)
        self.gateway_chip, self.gateway_gpio, self.gateway = make_radio(
            self.air, "gateway", self.config, gpio_backend, use_dio0, pins, spi_speed_hz
        )
        self.gateway_chip.fault = fault
        if begin:
            self.gateway.begin(receive=True)
        self.nodes: list[SimNode] = []
        for _ in range(nodes):
            self.add_node()

    def add_node(
        self, name: str | None = None, config: LoRaConfig | None = None, link: Link | None = None
    ) -> SimNode:
        name = name or f"node{len(self.nodes) + 1}"
        if config is None:  # the gateway's counterpart: it listens with the polarity the gateway sends
            g = self.config
            config = replace(g, invert_iq_rx=g.invert_iq_tx, invert_iq_tx=g.invert_iq_rx)
        chip, board, driver = make_radio(self.air, name, config)
        driver.begin(receive=False)
        node = SimNode(name, chip, board, driver)
        self.nodes.append(node)
        if link is not None:
            self.set_link(node, link)
        return node

    def node(self, which: int | str | SimNode) -> SimNode:
        if isinstance(which, SimNode):
            return which
        if isinstance(which, int):
            return self.nodes[which]
        for node in self.nodes:
            if node.name == which:
                return node
        raise KeyError(which)

    def set_link(self, which: int | str | SimNode, link: Link) -> None:
        """Link quality between one node and the gateway, both directions."""
        self.air.set_link(self.node(which).chip, self.gateway_chip, link)

    def send_at(self, when_s: float, which: int | str | SimNode, payload: bytes) -> None:
        """Schedule a transmission at virtual time ``when_s`` (returns at once)."""
        node = self.node(which)
        self.clock.call_at(when_s, lambda: node.send(payload, wait=False))

    def receive_all(self, duration_s: float) -> list[RxPacket]:
        """Every packet the gateway delivers during the next ``duration_s`` seconds."""
        deadline = self.clock.monotonic() + duration_s
        packets = []
        while (remaining := deadline - self.clock.monotonic()) > 0:
            packet = self.gateway.receive(remaining)
            if packet is not None:
                packets.append(packet)
        return packets

    def close(self) -> None:
        for node in self.nodes:
            node.radio.close()
        self.gateway.close()
        if self._own_clock:
            self.clock.close()
