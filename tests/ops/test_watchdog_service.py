"""The real service (gateway.service.app.Gateway: emulated radio, real outbox, real Mosquitto) under a
notify socket this test listens on, as systemd would run it with ``Type=notify`` and ``WatchdogSec=``:
READY comes first and only once the radio and outbox are up, WATCHDOG=1 arrives at half of WatchdogSec,
STATUS= lines follow the stats, and a stalled radio thread or a stuck core loop stops the pings."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import threading
import time
from pathlib import Path

from gateway.service.app import Gateway
from gateway.service.config import parse_config
from gateway.service.notify import Notifier

WATCHDOG_USEC = 400_000  # WatchdogSec=0.4 s: pings every 0.2 s


class Listener:
    """systemd's side of sd_notify: a datagram socket, every message with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []
        self.db_at_ready: bool | None = None
        self.db: Path | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if msg.startswith("READY=1") and self.db is not None:
                self.db_at_ready = _outbox_open(self.db)
            self.got.append((time.monotonic(), msg))

    def pings_between(self, t0: float, t1: float) -> list[float]:
        return [t for t, m in self.got if m == "WATCHDOG=1" and t0 <= t <= t1]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


def _outbox_open(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'outbox'").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def test_ready_watchdog_status_and_stalls(broker, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    listener = Listener(tmp_path / "notify.sock")
    listener.db = state / "gateway.db"
    cfg = parse_config(
        {
            "gateway": {"id": "wd", "state_dir": str(state), "stats_interval_s": 1.0},
            "radio": {"backend": "emulator", "emulator": {"nodes": 2, "interval_s": 0.5}},
            "mqtt": {"url": broker.url},
        },
        env={},
    )
    built = threading.Event()
    box: dict = {}
    radio_gate = threading.Event()
    radio_gate.set()
    core_gate = threading.Event()
    core_gate.set()

    def service() -> None:
        notifier = Notifier(
            {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        )
        gw = Gateway(cfg, notifier=notifier)
        box["gw"] = gw
        receive = gw.source.sim.gateway.receive

        def gated_receive(timeout: float):  # a hung SPI read while the gate is closed
            radio_gate.wait()
            return receive(timeout)

        gw.source.sim.gateway.receive = gated_receive
        step = gw.core.step

        def gated_step(timeout: float = 0.0) -> None:  # a core loop stuck in one iteration
            core_gate.wait()
            step(timeout)

        gw.core.step = gated_step
        built.set()
        gw.run()

    t = threading.Thread(target=service, daemon=True)
    t.start()
    try:
        assert built.wait(20)
        deadline = time.monotonic() + 10
        while not any(m.startswith("READY=1") for _, m in listener.got) and time.monotonic() < deadline:
            time.sleep(0.02)
        first_t, first = listener.got[0]
        assert first.startswith("READY=1\nSTATUS=receiving 868.100 MHz SF7 (emulator)"), first
        assert listener.db_at_ready is True  # the outbox was open when READY arrived

        time.sleep(1.3)
        pings = listener.pings_between(first_t, time.monotonic())
        gaps = sorted(b - a for a, b in itertools.pairwise(pings))
        assert len(pings) >= 4, listener.got
        assert 0.12 <= gaps[len(gaps) // 2] <= 0.4, gaps  # the median gap: half of WatchdogSec
        statuses = [m for _, m in listener.got if m.startswith("STATUS=rx ")]
        assert statuses and "broker up" in statuses[-1], listener.got

        radio_gate.clear()  # the radio thread hangs: the heartbeat stops
        stalled = time.monotonic()
        time.sleep(2.8)  # radio_stall_s is 2 s at this WatchdogSec (never less)
        late = listener.pings_between(stalled + 2.3, time.monotonic())
        assert late == [], "pings went on although the radio thread was stuck"
        radio_gate.set()
        time.sleep(0.6)
        assert listener.pings_between(time.monotonic() - 0.5, time.monotonic()), "pings did not resume"

        core_gate.clear()  # the core loop is stuck: nothing feeds the watchdog
        stuck = time.monotonic()
        time.sleep(0.8)
        assert listener.pings_between(stuck + 0.25, time.monotonic()) == []
        core_gate.set()
    finally:
        core_gate.set()
        radio_gate.set()
        if "gw" in box:
            box["gw"].request_stop()
        t.join(20)
        listener.close()
    assert any(m.startswith("STOPPING=1") for _, m in listener.got)
