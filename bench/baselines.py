"""Baselines the benchmarks measure ours against, in the same run: how the job is commonly done.

- ``NaiveDriver``: an SX1276 receive driver in the style of public Python drivers, written against the
  spidev and RPi.GPIO module surfaces (so it runs unchanged on the emulator's ``installed_as_modules``):
  one SPI transaction per register, status registers read one by one, the FIFO read one byte per
  transaction, CRC-failed packets discarded.
- ``paho_one_thread`` / ``paho_loop_start``: QoS 1 publishing straight from RAM with paho-mqtt, no
  frame checks and no outbox (a hand-rolled bridge). The first drives paho from the caller's thread
  the way ``gateway.sinks.mqtt`` does; the second uses paho's own network thread (``loop_start``)
  with paho's defaults, the usual hand-rolled way.
"""

from __future__ import annotations

import contextlib
import importlib
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

# SX1276 register addresses (datasheet, LoRa register map)
FIFO, OP_MODE, FRF_MSB, FRF_MID, FRF_LSB = 0x00, 0x01, 0x06, 0x07, 0x08
FIFO_ADDR_PTR, FIFO_RX_CURRENT_ADDR, IRQ_FLAGS, RX_NB_BYTES = 0x0D, 0x10, 0x12, 0x13
PKT_SNR, PKT_RSSI = 0x19, 0x1A
MODEM_CONFIG1, MODEM_CONFIG2, MODEM_CONFIG3, DIO_MAPPING1, VERSION = 0x1D, 0x1E, 0x26, 0x40, 0x42
RX_DONE, CRC_ERROR = 0x40, 0x20
BANDWIDTHS_HZ = (7_800, 10_400, 15_600, 20_800, 31_250, 41_700, 62_500, 125_000, 250_000, 500_000)


class NaiveDriver:
    """Receives the way many public Python SX1276 drivers do: ``spi.xfer`` per register.

    Per packet (DIO0 = RxDone): IrqFlags, RxNbBytes, FifoRxCurrentAddr, write FifoAddrPtr, one
    transaction per payload byte, PktSnrValue, PktRssiValue, clear IrqFlags: 7 + length transactions.
    ``transactions`` counts those of the last packet; ``on_rx_done`` is looked up at each interrupt,
    so a benchmark may wrap it on the instance.
    """

    def __init__(self, dio0: int, frequency_hz: int = 868_100_000, sf: int = 7, bw_hz: int = 125_000) -> None:
        spidev = importlib.import_module("spidev")
        self.GPIO = importlib.import_module("RPi.GPIO")
        self.frequency_hz, self.sf, self.bw_hz = frequency_hz, sf, bw_hz
        self.spi = spidev.SpiDev()
        self.spi.open(0, 0)
        self.spi.max_speed_hz = 5_000_000
        self.spi.mode = 0b00
        self.received: list[bytes] = []
        self.rx_done = 0  # RxDone interrupts served (any CRC state)
        self.crc_errors = 0  # packets read and discarded for a failed CRC
        self.last_snr_db = 0.0
        self.last_rssi_dbm = 0
        self.transactions = 0
        self.GPIO.setmode(self.GPIO.BCM)
        self.GPIO.setup(dio0, self.GPIO.IN, pull_up_down=self.GPIO.PUD_DOWN)
        self.GPIO.add_event_detect(dio0, self.GPIO.RISING, callback=self._irq)

    def read(self, reg: int) -> int:
        self.transactions += 1
        return self.spi.xfer([reg & 0x7F, 0])[1]

    def write(self, reg: int, value: int) -> None:
        self.transactions += 1
        self.spi.xfer([reg | 0x80, value])

    def start(self) -> None:
        """Check the chip, configure LoRa (explicit header, CR 4/5, CRC on) and listen continuously."""
        if self.read(VERSION) != 0x12:
            raise RuntimeError("no SX1276 answers: check the wiring")
        self.write(OP_MODE, 0x80)  # SLEEP + LongRangeMode in one write, from FSK standby
        if self.read(OP_MODE) != 0x80:
            raise RuntimeError("the chip did not enter LoRa mode")
        frf = round(self.frequency_hz * 2**19 / 32_000_000)
        self.write(FRF_MSB, frf >> 16)
        self.write(FRF_MID, (frf >> 8) & 0xFF)
        self.write(FRF_LSB, frf & 0xFF)
        self.write(MODEM_CONFIG1, (BANDWIDTHS_HZ.index(self.bw_hz) << 4) | 0x02)
        self.write(MODEM_CONFIG2, (self.sf << 4) | 0x04)
        symbol_ms = 2**self.sf / self.bw_hz * 1000
        self.write(MODEM_CONFIG3, 0x04 | (0x08 if symbol_ms > 16 else 0))  # AGC on, LDRO when needed
        self.write(DIO_MAPPING1, 0x00)  # DIO0 = RxDone
        self.write(OP_MODE, 0x85)  # RXCONTINUOUS

    def _irq(self, channel: int) -> None:
        self.on_rx_done()

    def on_rx_done(self) -> None:
        self.transactions = 0
        self.rx_done += 1
        flags = self.read(IRQ_FLAGS)
        length = self.read(RX_NB_BYTES)
        self.write(FIFO_ADDR_PTR, self.read(FIFO_RX_CURRENT_ADDR))
        payload = bytes(self.read(FIFO) for _ in range(length))
        snr = self.read(PKT_SNR)
        self.last_snr_db = (snr - 256 if snr & 0x80 else snr) / 4
        self.last_rssi_dbm = -157 + self.read(PKT_RSSI)
        self.write(IRQ_FLAGS, 0xFF)
        if flags & RX_DONE and not flags & CRC_ERROR:
            self.received.append(payload)
        else:
            self.crc_errors += 1


@dataclass(frozen=True, slots=True)
class PublishRun:
    """One baseline publishing run: ``frames`` acknowledged by PUBACK in ``wall_s`` / ``cpu_s``."""

    frames: int
    wall_s: float
    cpu_s: float  # CPU time of this whole process (paho's network thread included)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s

    @property
    def frames_per_cpu_s(self) -> float:
        return self.frames / self.cpu_s


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )


def _quickack(sock: object) -> None:
    """As the sink does after each read: ACK at once, so the broker's Nagle does not hold PUBACKs."""
    opt = getattr(socket, "TCP_QUICKACK", None)
    if opt is not None and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)


def _step(client: mqtt.Client, timeout_s: float) -> None:
    """One turn of a caller-driven paho loop: write what is queued, wait for input, read it."""
    if client.want_write():
        client.loop_write()
    sock = client.socket()
    if sock is None:
        raise RuntimeError("the broker closed the connection")
    readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout_s)
    if readable:
        client.loop_read()
        _quickack(client.socket())
    client.loop_misc()


def paho_one_thread(
    host: str, port: int, messages: Sequence[tuple[str, bytes]], window: int = 200, timeout_s: float = 120
) -> PublishRun:
    """Publish ``messages`` at QoS 1 from this thread, at most ``window`` unacknowledged (as the sink)."""
    client = _client(f"bench-bare-{id(messages):x}")
    client.max_inflight_messages_set(0)  # our window bounds what is in flight, as in the sink
    client.max_queued_messages_set(0)
    client.on_socket_register_write = lambda c, u, s: None  # publish() queues; _step writes the batch
    state = {"connected": False, "acked": 0}

    def on_connect(c: Any, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
        state["connected"] = not rc.is_failure

    def on_publish(c: Any, u: Any, mid: int, rc: mqtt.ReasonCode, p: Any) -> None:
        state["acked"] += 1

    client.on_connect, client.on_publish = on_connect, on_publish
    client.connect(host, port, keepalive=60)
    deadline = time.monotonic() + timeout_s
    try:
        while not state["connected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("bare paho: no CONNACK")
            _step(client, 0.05)
        n, sent = len(messages), 0
        t0, c0 = time.perf_counter(), time.process_time()
        while state["acked"] < n:
            while sent < n and sent - state["acked"] < window:
                topic, payload = messages[sent]
                client.publish(topic, payload, qos=1)
                sent += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare paho: {state['acked']} of {n} PUBACKs")
            _step(client, 1.0)
        run = PublishRun(n, time.perf_counter() - t0, time.process_time() - c0)
    finally:
        client.disconnect()
        with contextlib.suppress(Exception):
            client.loop_write()
    return run


def paho_loop_start(
    host: str, port: int, messages: Sequence[tuple[str, bytes]], timeout_s: float = 120
) -> PublishRun:
    """Publish ``messages`` at QoS 1 with paho's network thread and paho's default limits."""
    client = _client(f"bench-thread-{id(messages):x}")
    connected, done = threading.Event(), threading.Event()
    n = len(messages)
    acked = [0]

    def on_connect(c: Any, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
        if not rc.is_failure:
            connected.set()

    def on_publish(c: Any, u: Any, mid: int, rc: mqtt.ReasonCode, p: Any) -> None:
        acked[0] += 1  # paho's thread only
        if acked[0] >= n:
            done.set()

    client.on_connect, client.on_publish = on_connect, on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("paho loop_start: no CONNACK")
        t0, c0 = time.perf_counter(), time.process_time()
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        if not done.wait(timeout_s):
            raise RuntimeError(f"paho loop_start: {acked[0]} of {n} PUBACKs")
        return PublishRun(n, time.perf_counter() - t0, time.process_time() - c0)
    finally:
        client.disconnect()
        client.loop_stop()
