"""Where packets come from: the SX1276 on SPI, or emulated sensor nodes on a virtual air.

Each source owns one receive thread that only hands packets to ``submit`` (the core's queue) and
stamps a heartbeat; the core stops feeding the systemd watchdog when the heartbeat stalls (a hung
SPI read), so systemd restarts the service.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.codec import DEMO_MODEL, CodecError, ModelStore, demo_model
from gateway.errors import ConfigError
from gateway.frames import FrameEncoder, FrameError, FrameType, Node, NodeRegistry
from gateway.frames.nodeinfo import MAX_MODELS, NodeInfo, held_model
from gateway.radio.packet import RxPacket
from gateway.radio.sx1276 import SX1276, LoRaConfig, Pins
from gateway.service.config import RadioSection

# Annotations only: numpy and Model are the emulated nodes' (a chip's service with no learned model never
# loads numpy); the downlink code is imported when [downlink] is on (attach_downlink) or by emulated nodes.
if TYPE_CHECKING:
    import numpy as np

    from gateway.codec import Model
    from gateway.downlink.scheduler import TxQueue, TxRunner
    from gateway.frames.downlink import DownlinkDecoder

log = logging.getLogger(__name__)

SIM_NODE_BASE = 0x5100  # simulated node ids 0x5101, 0x5102, ... (two bytes on air, like most fleets)
# A directory the emulated air takes commands from (bench/chaos.py): files ``*.cmd`` with lines
# ``send HEX`` (a packet on the air), ``chip-reset`` (the gateway chip's power-on reset), ``fault NAME``.
CONTROL_ENV = "LORA_GW_EMULATOR_CONTROL"


class DriverSource:
    """Runs an SX1276 driver's receive loop in a thread of its own."""

    def __init__(self, driver: SX1276, name: str = "radio") -> None:
        self.driver = driver
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self.tx: TxRunner | None = None  # downlink windows, served by this thread only

    def attach_downlink(self, queue: TxQueue, max_late_s: float) -> TxRunner:
        from gateway.downlink.scheduler import TxRunner

        self.tx = TxRunner(self.driver, self.driver.clock, queue, max_late_s)
        return self.tx

    def heartbeat(self) -> float:
        return self._heartbeat

    def start(self, submit: Callable[[RxPacket], None]) -> None:
        self._thread = threading.Thread(target=self._run, args=(submit,), name=self.name, daemon=True)
        self._thread.start()

    def _run(self, submit: Callable[[RxPacket], None]) -> None:
        try:
            while not self._stop.is_set():
                packet = self.driver.receive(0.25) if self.tx is None else self.tx.receive(0.25)
                self._heartbeat = time.monotonic()
                if packet is not None:
                    submit(packet)
        except Exception as exc:  # the heartbeat stops; the watchdog and the log say why
            self.error = exc
            log.error("%s: receive loop stopped: %s: %s", self.name, type(exc).__name__, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.driver.close()
        except Exception as exc:  # closing a broken radio must not block the shutdown
            log.warning("%s: close failed: %s", self.name, exc)

    def stats(self) -> dict:
        return self.driver.stats.snapshot()


def lora_config(radio: RadioSection) -> LoRaConfig:
    """The driver's LoRaConfig from a ``[radio]`` config section: uplinks are received with normal IQ,
    the gateway's own transmissions (downlinks, diagnostics) go out inverted unless
    ``downlink_invert_iq = false`` (nodes whose firmware listens with normal IQ)."""
    return LoRaConfig(
        frequency_hz=radio.frequency_hz,
        sf=radio.sf,
        bw_hz=radio.bw_hz,
        cr=radio.cr,
        implicit_header=radio.sf == 6,
        preamble=radio.preamble,
        sync_word=radio.sync_word,
        tx_power_dbm=radio.tx_power_dbm,
        invert_iq_rx=False,
        invert_iq_tx=radio.downlink_invert_iq,
    )


def open_sx1276(radio: RadioSection) -> SX1276:
    """The real chip: spidev + RPi.GPIO/gpiod per the ``[radio]`` section (imports them lazily)."""
    from gateway.hw.gpio import open_gpio
    from gateway.hw.spi import SpidevPort

    m = re.fullmatch(r"/dev/spidev(\d+)\.(\d+)", radio.spi_device)
    if m is None:
        raise ConfigError(f"radio.spi_device: {radio.spi_device!r} is not /dev/spidev<bus>.<cs>")
    spi = SpidevPort(int(m.group(1)), int(m.group(2)), radio.spi_speed_hz)
    gpio = open_gpio(backend=radio.gpio)
    pins = Pins(reset=radio.reset_pin, dio0=radio.dio0_pin, dio1=radio.dio1_pin)
    driver = SX1276(spi, gpio, pins, lora_config(radio), name="sx1276")
    driver.begin(receive=True)
    return driver


class Telemetry:
    """What one simulated node measures: the codec's demo model, or Cayenne LPP readings."""

    def __init__(self, rng: np.random.Generator, model: Model | None) -> None:
        self.rng = rng
        self.model = model
        self._series: np.ndarray | None = None
        self._pos = 0
        self._temp = float(rng.uniform(12, 24))
        self._hum = float(rng.uniform(40, 70))

    def use(self, model: Model) -> None:
        """Send with ``model`` from the next frame on (a set-model command)."""
        self.model = model
        self._series = None

    def frame(self, enc: FrameEncoder) -> bytes:
        if self.model is not None:
            m = self.model
            k = max(1, min(int(m.samples_per_frame), 64))
            if self._series is None or self._pos + k > len(self._series):
                self._series = m.generate(k * 32, self.rng)
                self._pos = 0
            chunk = self._series[self._pos : self._pos + k]
            self._pos += k
            return enc.encode_model(m, chunk)  # CRC/MIC bound to the model's fingerprint
        self._temp = round(min(45.0, max(-20.0, self._temp + float(self.rng.normal(0, 0.2)))), 1)
        self._hum = round(min(100.0, max(0.0, self._hum + float(self.rng.normal(0, 0.5)))) * 2) / 2
        return enc.encode_lpp([(1, "temperature", self._temp), (2, "humidity", self._hum)])


def install_demo_model(state_dir: Path) -> Model | None:
    """Install the codec's shipped demo model into ``state_dir``; None (LPP nodes) if it cannot load."""
    try:
        model = demo_model()
    except (OSError, CodecError) as exc:
        log.warning("demo model unavailable (%s); simulated nodes send Cayenne LPP", exc)
        return None
    store = ModelStore(state_dir)
    if model.version not in store.versions(model.model_id):
        data = resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / DEMO_MODEL
            p.write_bytes(data)
            store.install(p)
    return model


def firmware_models(state_dir: Path, model: Model | None) -> tuple[Model, ...]:
    """What the emulator's simulated nodes hold: every version of ``model``'s id installed when the
    service starts (a firmware built with the gateway's models), so a later version is one they lack."""
    if model is None:
        return ()
    store, held = ModelStore(state_dir), []
    for version in store.versions(model.model_id):
        try:
            m = store.load(model.model_id, version)
        except CodecError as exc:
            log.warning("model %d@%d not given to the simulated nodes: %s", model.model_id, version, exc)
            continue
        if m.version <= 0xFFFF and m.schema.names == model.schema.names:
            held.append(m)
    return tuple(held[-MAX_MODELS:]) or (model,)  # a report lists at most 16: the newest


SET_INTERVAL = 0x01  # node commands (docs/frame-format.md, "Node commands")
SET_MODEL = 0x02
REPORT_INFO = 0x03
SIM_FIRMWARE = (1, 0, 0)  # the version the simulated nodes report


class SimNodeState:
    """What one simulated node keeps of the downlink: its checker, the acknowledgements it got, the
    commands it acted on; and its firmware: the models it holds (``held``) and whether its next uplink
    is a node-info report (at boot, after a model switch, on request)."""

    def __init__(self, held: tuple[Model, ...] = (), report_info: bool = True) -> None:
        self.held = {(m.model_id, m.version): m for m in held}
        self.info_due = report_info
        self.switch: Model | None = None  # a set-model command the node acted on, for its telemetry
        self.downlinks: DownlinkDecoder | None = None
        self.last_fcnt = 0
        self.ack_expected = False
        self.acks_received = 0
        self.rejected = 0
        self.commands: list[bytes] = []
        self.interval_s: float | None = None
        self.model: tuple[int, int] | None = None
        self.confirm_due: int | None = None  # downlink counter to acknowledge in the next uplink

    def interval(self, default: float) -> float:
        return self.interval_s if self.interval_s is not None else default

    def act(self, command: bytes, node_id: int) -> None:
        self.commands.append(command)
        if command[0] == SET_INTERVAL and len(command) == 3:
            self.interval_s = float(max(1, int.from_bytes(command[1:3], "little")))
            log.info("sim node %08x: reporting interval set to %.0f s", node_id, self.interval_s)
        elif command[0] == SET_MODEL and len(command) == 4:
            target = (command[1], int.from_bytes(command[2:4], "little"))
            model = self.held.get(target)
            if model is None:  # what real firmware must do: never switch to a model it does not hold
                log.info("sim node %08x: set model %d@%d ignored: not in this firmware", node_id, *target)
                return
            self.model, self.switch, self.info_due = target, model, True
            log.info("sim node %08x: model set to %d v%d", node_id, *self.model)
        elif command[0] == REPORT_INFO and len(command) == 1:
            self.info_due = True
        else:
            log.info("sim node %08x: unknown command %s ignored", node_id, command.hex())


class _Confirming:
    """A FrameEncoder view whose frames request an acknowledgement."""

    def __init__(self, enc: FrameEncoder) -> None:
        self._enc = enc

    def encode(self, *a, **kw):
        return self._enc.encode(*a, ack_requested=True, **kw)

    def encode_model(self, model, samples, **kw):
        return self._enc.encode_model(model, samples, ack_requested=True, **kw)

    def encode_lpp(self, readings, **kw):
        return self._enc.encode_lpp(readings, ack_requested=True, **kw)


class SimNetwork:
    """N emulated sensor nodes and the emulated gateway radio (gateway.radio.sim) as a packet source.

    Nodes transmit every ``interval_s`` (±20 %, random phase) through their own SX1276 driver on the
    virtual air; the gateway's driver receives in this source's thread. Virtual time runs ``speed``
    times faster than real time.
    """

    def __init__(
        self,
        nodes: int,
        interval_s: float = 10.0,
        seed: int = 1,
        loss: float = 0.0,
        speed: float = 1.0,
        model: Model | None = None,
        config: LoRaConfig | None = None,
        path_loss_db: float | None = None,
        fault: str = "none",
        interferers: tuple = (),
        confirmed: bool = False,
        rx_delay_s: float = 1.0,
        firmware: tuple[Model, ...] | None = None,
        report_info: bool = True,
    ) -> None:
        """``firmware``: the models every node holds (default: ``model`` alone); ``report_info``: nodes
        send a node-info report at boot, after a model switch and when asked (command 0x03)."""
        from gateway.radio.sim import Link, RadioSim

        link = Link(loss=loss) if path_loss_db is None else Link(path_loss_db=path_loss_db, loss=loss)
        base = config or LoRaConfig(invert_iq_tx=True)
        # LoRaWAN practice: uplinks in normal IQ, downlinks inverted, so nodes never hear each other and
        # the gateway never hears its own kind (RegInvertIQ 0x33, datasheet; AN1200.24). The simulated
        # nodes listen with the polarity the gateway transmits with ([radio] downlink_invert_iq).
        inverted = base.invert_iq_tx
        self.sim = RadioSim(
            nodes=0,
            config=replace(base, invert_iq_rx=False, invert_iq_tx=inverted),
            link=link,
            seed=seed,
            speed=speed,
            fault=fault,
            interferers=interferers,
        )
        node_cfg = replace(base, invert_iq_rx=inverted, invert_iq_tx=False)
        for _ in range(nodes):
            self.sim.add_node(config=node_cfg)
        self.confirmed = confirmed  # nodes request an acknowledgement of every uplink
        self.rx_delay_s = rx_delay_s
        self.tx: TxRunner | None = None
        held = tuple(firmware) if firmware is not None else ((model,) if model is not None else ())
        self.node_state = [SimNodeState(held, report_info) for _ in range(nodes)]
        self.interval_s = interval_s
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.model = model
        self.node_ids = [SIM_NODE_BASE + i + 1 for i in range(nodes)]
        self.encoders = [FrameEncoder(nid) for nid in self.node_ids]
        from gateway.frames.downlink import DownlinkDecoder

        for st, nid in zip(self.node_state, self.node_ids, strict=True):
            st.downlinks = DownlinkDecoder(nid, None)  # open nodes until ``register`` gives their keys
        self.telemetry = [Telemetry(np.random.default_rng(seed * 1000 + i), model) for i in range(nodes)]
        self.frames_sent = 0
        self.bytes_on_air = 0
        self.airtime_s = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeat = time.monotonic()
        self._until: float | None = None
        self._control = os.environ.get(CONTROL_ENV) or None
        self._control_at = 0.0

    def register(self, registry: NodeRegistry) -> None:
        """Register the simulated nodes (once) and continue where the gateway is: its counter and, for a node
        the operator gave a key, that key and its key epoch (as a provisioned node would)."""
        from gateway.frames.downlink import DownlinkDecoder

        for i, nid in enumerate(self.node_ids):
            node = registry.get(nid)
            if node is None:
                node = registry.add(Node(node_id=nid, name=f"sim-{i + 1}", interval_s=self.interval_s))
            self.encoders[i] = FrameEncoder(nid, node.key, next_fcnt=node.next_fcnt, key_epoch=node.key_epoch)
            self.node_state[i].downlinks = DownlinkDecoder(nid, node.key, node.key_epoch)

    def attach_downlink(self, queue: TxQueue, max_late_s: float) -> TxRunner:
        from gateway.downlink.scheduler import TxRunner

        self.tx = TxRunner(self.sim.gateway, self.sim.clock, queue, max_late_s)
        return self.tx

    def heartbeat(self) -> float:
        return self._heartbeat

    def start(self, submit: Callable[[RxPacket], None], seconds: float | None = None) -> None:
        """Start receiving and transmitting; with ``seconds`` the nodes stop after that virtual time."""
        clock = self.sim.clock
        self._until = None if seconds is None else clock.monotonic() + seconds
        rx = threading.Thread(target=self._receive, args=(submit,), name="sim-gateway-rx", daemon=True)
        tx = threading.Thread(target=self._transmit, name="sim-nodes-tx", daemon=True)
        self._threads = [rx, tx]
        rx.start()
        tx.start()

    @property
    def transmitting(self) -> bool:
        return self._threads[1].is_alive() if len(self._threads) > 1 else False

    def _receive(self, submit: Callable[[RxPacket], None]) -> None:
        gw = self.sim.gateway
        try:
            while not self._stop.is_set():
                packet = gw.receive(0.1) if self.tx is None else self.tx.receive(0.1)
                self._heartbeat = time.monotonic()
                if packet is not None:
                    submit(packet)
        except Exception as exc:
            log.error("emulated gateway radio stopped: %s: %s", type(exc).__name__, exc)

    def _transmit(self) -> None:
        """Every node's schedule: uplinks, and after each the node's receive window (Class A)."""
        clock = self.sim.clock
        now = clock.monotonic()
        seq = itertools.count()
        queue = [
            (now + float(self.rng.uniform(0, self.interval_s)), next(seq), i, "send")
            for i in range(len(self.node_ids))
        ]
        heapq.heapify(queue)
        dl_max = self.sim.config.time_on_air_s(64)
        try:
            while not self._stop.is_set() and queue:
                if self._control is not None:
                    self._take_commands()
                when, _, i, what = heapq.heappop(queue)
                if what == "send" and self._until is not None and when >= self._until:
                    continue  # no new uplinks; windows still pending close normally
                delay = when - clock.monotonic()
                if delay > 0:
                    clock.sleep(min(delay, 0.5))
                    heapq.heappush(queue, (when, next(seq), i, what))
                    continue
                node, st = self.sim.nodes[i], self.node_state[i]
                if what == "open":
                    node.radio.start_receive()
                    continue
                if what == "close":
                    self._close_window(i, node, st)
                    continue
                if not node.busy:
                    frame = self._uplink(i, st)
                    t0 = clock.monotonic()
                    toa = node.send(frame, wait=False)
                    self.airtime_s += toa
                    self.frames_sent += 1
                    self.bytes_on_air += len(frame)
                    window = t0 + toa + self.rx_delay_s
                    heapq.heappush(queue, (window - 0.05, next(seq), i, "open"))
                    heapq.heappush(queue, (window + 0.05 + dl_max, next(seq), i, "close"))
                jitter = float(self.rng.uniform(0.8, 1.2))
                heapq.heappush(queue, (when + st.interval(self.interval_s) * jitter, next(seq), i, "send"))
        except Exception as exc:
            log.error("simulated nodes stopped: %s: %s", type(exc).__name__, exc)

    def _take_commands(self) -> None:
        """Emulator only, opt-in by environment: apply the command files of the control directory."""
        now = time.monotonic()
        if now - self._control_at < 0.1:
            return
        self._control_at = now
        try:
            names = sorted(n for n in os.listdir(self._control) if n.endswith(".cmd"))
        except OSError:
            return
        for name in names:
            path = Path(self._control, name)
            try:
                lines = path.read_text().splitlines()
                path.rename(path.with_suffix(".done"))
            except OSError:
                continue
            for line in lines:
                cmd, _, arg = line.strip().partition(" ")
                try:
                    if cmd == "send":
                        node = self.sim.nodes[0]
                        while node.busy:
                            self.sim.clock.sleep(0.01)
                        node.send(bytes.fromhex(arg), wait=True)
                    elif cmd == "chip-reset":
                        self.sim.gateway_chip.power_on_reset()
                    elif cmd == "fault":
                        self.sim.gateway_chip.fault = arg
                except (ValueError, RuntimeError) as exc:
                    log.warning("emulator control %s: %s", cmd, exc)

    def _uplink(self, i: int, st: SimNodeState) -> bytes:
        enc = self.encoders[i]
        st.last_fcnt = enc.next_fcnt
        st.ack_expected = self.confirmed
        if st.confirm_due is not None:  # report the confirmed command as acknowledged (frame type 1)
            frame = enc.encode(st.confirm_due.to_bytes(2, "little"), frame_type=FrameType.ACK)
            st.confirm_due = None
            st.ack_expected = False
            return frame
        if st.switch is not None:
            self.telemetry[i].use(st.switch)
            st.switch = None
        if st.info_due:
            st.info_due, st.ack_expected = False, False
            return enc.encode_info(self.node_info(i))
        if not self.confirmed:
            return self.telemetry[i].frame(enc)
        return self.telemetry[i].frame(_Confirming(enc))

    def node_info(self, i: int) -> NodeInfo:
        """What node ``i``'s firmware reports: its version, the model it sends with, the models it holds."""
        st, m = self.node_state[i], self.telemetry[i].model
        held = tuple(held_model(mid, v, model.fingerprint) for (mid, v), model in sorted(st.held.items()))
        return NodeInfo(SIM_FIRMWARE, None if m is None else (m.model_id, m.version), held)

    def _close_window(self, i: int, node, st: SimNodeState) -> None:
        packet = node.radio.receive(0.0005)
        node.radio.standby()
        if packet is None or st.downlinks is None:
            return
        try:
            down = st.downlinks.decode(packet.payload)
        except FrameError as exc:
            st.rejected += 1
            log.info("sim node %08x: downlink rejected (%s)", self.node_ids[i], exc.reason)
            return
        if down.frame_type is FrameType.ACK and st.ack_expected and down.acked_fcnt == st.last_fcnt & 0xFFFF:
            st.acks_received += 1
        if down.command:
            st.act(down.command, self.node_ids[i])
            if down.confirm:
                st.confirm_due = down.fcnt & 0xFFFF

    def wait_transmissions(self, timeout_s: float) -> None:
        if len(self._threads) > 1:
            self._threads[1].join(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.sim.close()

    def stats(self) -> dict:
        return {"frames_sent": self.frames_sent, "bytes_on_air": self.bytes_on_air, **self.air_fates()}

    @property
    def acks_received_by_nodes(self) -> int:
        return sum(st.acks_received for st in self.node_state)

    def air_fates(self) -> dict:
        return {f"air_{k}": v for k, v in self.sim.air.rx_stats.get("gateway", {}).items()}
