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
LATE_S = 0.3  # how much later than sent a datagram may be recorded (the listener thread is scheduled late)


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


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
            if not radio_gate.is_set():
                box.setdefault("radio_stuck_at", time.monotonic())  # its last heartbeat was before this
            radio_gate.wait()
            return receive(timeout)

        gw.source.sim.gateway.receive = gated_receive
        step = gw.core.step

        def gated_step(timeout: float = 0.0) -> None:  # a core loop stuck in one iteration
            if not core_gate.is_set():
                box.setdefault("core_stuck_at", time.monotonic())  # its last ping was before this
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

        # Times are taken where the thread really stops (it may be inside a receive or a step when its
        # gate closes), and a datagram may arrive a little after it was sent: LATE_S on a busy machine.
        radio_gate.clear()  # the radio thread hangs: the heartbeat stops
        assert _wait(lambda: "radio_stuck_at" in box, 5), "the radio thread never came back to its read"
        stalled = box["radio_stuck_at"]
        time.sleep(max(0.0, stalled + 3.0 - time.monotonic()))  # radio_stall_s is 2 s at this WatchdogSec
        late = listener.pings_between(stalled + 2.0 + LATE_S, time.monotonic())
        assert late == [], "pings went on although the radio thread was stuck"
        radio_gate.set()
        resumed = time.monotonic()
        assert _wait(lambda: listener.pings_between(resumed, time.monotonic()), 2.0), "pings did not resume"

        core_gate.clear()  # the core loop is stuck: nothing feeds the watchdog
        assert _wait(lambda: "core_stuck_at" in box, 5), "the core loop never came back to its step"
        stuck = box["core_stuck_at"]
        time.sleep(max(0.0, stuck + 1.0 - time.monotonic()))
        assert listener.pings_between(stuck + LATE_S, time.monotonic()) == []
        core_gate.set()
    finally:
        core_gate.set()
        radio_gate.set()
        if "gw" in box:
            box["gw"].request_stop()
        t.join(20)
        listener.close()
    assert any(m.startswith("STOPPING=1") for _, m in listener.got)
