"""``lora-gw run`` as a real process (emulated radio, private Mosquitto): signals, kills, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway.pipeline.message import message_id

from .helpers import Collector

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, port: int, **emulator: object) -> Path:
    emu = {"nodes": 3, "interval_s": 1.0, "speed": 10.0, "seed": 7, **emulator}
    text = (
        f"""
[gateway]
id = "gwt"
state_dir = "{tmp / "state"}"
stats_interval_s = 1
[radio]
backend = "emulator"
[radio.emulator]
"""
        + "\n".join(f"{k} = {v}" for k, v in emu.items())
        + f"""
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_min_s = 0.5
reconnect_max_s = 1.0
[logging]
level = "info"
"""
    )
    p = tmp / "gateway.toml"
    p.write_text(text)
    return p


def start(config: Path, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """``lora-gw run``; its stderr is a pipe, or the file ``log`` for long runs (a pipe nobody reads
    fills after 64 KiB of log lines and then blocks the service)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL if log else subprocess.PIPE,
        stderr=log.open("ab") if log else subprocess.PIPE,
    )


def outbox_rows(db: Path) -> set[str]:
    """Rows still to deliver (delivered learned-model rows stay in the table as the history)."""
    with sqlite3.connect(db) as c:
        upto = c.execute("SELECT upto FROM outbox_kept").fetchone()[0]
        sql = "SELECT node_id, fcnt FROM outbox WHERE state >= 0 AND NOT (state = 0 AND id <= ?)"
        rows = c.execute(sql, (upto,))
        return {message_id(n, f) for n, f in rows}


def kept_rows(db: Path) -> set[str]:
    with sqlite3.connect(db) as c:
        upto = c.execute("SELECT upto FROM outbox_kept").fetchone()[0]
        sql = "SELECT node_id, fcnt FROM outbox WHERE state = -1 OR (state = 0 AND id <= ?)"
        rows = c.execute(sql, (upto,))
        return {message_id(n, f) for n, f in rows}


def wait(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_publishes_offline_flushes_and_notifies_systemd(tmp_path, broker):
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(0.2)
    # read as systemd does, while the service runs: the socket queues only net.unix.max_dgram_qlen (10)
    # datagrams, and the service drops what does not fit (a slow run sends more WATCHDOG=1 than that)
    datagrams: list[str] = []
    reading = threading.Event()
    reading.set()

    def read() -> None:
        while reading.is_set():
            try:
                datagrams.append(notify.recv(4096).decode())
            except TimeoutError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sub = Collector(broker.port)
    proc = start(
        write_config(tmp_path, broker.port), {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    )
    try:
        assert wait(lambda: len(sub.json_on("/telemetry")) >= 10 and sub.json_on("/stats")), (
            proc.stderr.peek()
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reading.clear()
        reader.join(5)
    assert sub.wait_for(lambda: sub.payloads("lora/gwt/status")[-1:] == [b"offline"])
    while True:  # what came after the reader's last look
        try:
            datagrams.append(notify.recv(4096).decode())
        except TimeoutError:
            break
    notify.close()
    assert any("READY=1" in d for d in datagrams) and any(d == "WATCHDOG=1" for d in datagrams)
    assert any("STOPPING=1" in d for d in datagrams)
    stats = sub.json_on("/stats")[-1]
    assert stats["received"] >= stats["accepted"] > 0 and "drops" in stats and "outbox" in stats
    msgs = sub.json_on("/telemetry")
    ids = [m["msg_id"] for m in msgs]
    assert len(ids) == len(set(ids))  # never twice
    # a clean stop with the broker up delivers everything it accepted: nothing left, nothing missing
    assert outbox_rows(tmp_path / "state" / "gateway.db") == set()
    model_ids = {m["msg_id"] for m in msgs if m.get("model_id") is not None}
    assert model_ids and kept_rows(tmp_path / "state" / "gateway.db") == model_ids  # [history] on: kept
    final = re.search(r"stopping: rx (\d+), accepted (\d+), published (\d+)", proc.stderr.read().decode())
    assert final is not None
    assert int(final.group(2)) == int(final.group(3)) == len(ids)
    sub.close()


def test_sigkill_mid_stream_then_restart_publishes_every_stored_frame(tmp_path, broker_factory):
    broker = broker_factory(persistence=True)
    sub = Collector(broker.port, "lora/+/nodes/#", persistent_id="kill-test-consumer")
    config = write_config(tmp_path, broker.port)
    db = tmp_path / "state" / "gateway.db"
    proc = start(config)
    try:
        assert wait(lambda: len(sub.msg_ids()) >= 10), proc.stderr.peek()
        broker.stop()  # the gateway keeps receiving; frames pile up in the outbox
        assert wait(lambda: len(outbox_rows(db)) >= 15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = outbox_rows(db)  # every frame the killed gateway had committed and not yet delivered
    with sqlite3.connect(db) as c:
        counters = dict(c.execute("SELECT node_id, next_fcnt FROM nodes"))
    for mid in stored:
        node, fcnt = mid.split("-")
        assert int(fcnt) < counters[int(node, 16)]  # stored frames and counters agree
    broker.start()
    proc = start(config)
    try:
        assert wait(lambda: stored <= set(sub.msg_ids()), 30), sorted(stored - set(sub.msg_ids()))[:5]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    got = sub.msg_ids()
    by_node: dict[str, list[int]] = {}
    for mid in got:
        node, fcnt = mid.split("-")
        by_node.setdefault(node, []).append(int(fcnt))
    # after the restart the nodes continue from the stored counters: no counter is reused for new data
    for node, fcnts in by_node.items():
        assert max(fcnts) >= counters[int(node, 16)] - 1
    sub.close()


def test_bad_config_one_line_error_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[radio]\nsf = 13\n")
    for cmd in (["config", "check", str(bad)], ["run", "--config", str(bad)]):
        r = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", *cmd],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2
        assert r.stderr == "lora-gw: radio.sf: 13 is outside 6..12\n"
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "config",
            "check",
            "--json",
            str(REPO / "config/gateway.toml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LORA_GW_MQTT_URL": "mqtt://u:pw@h"},
    )
    assert good.returncode == 0, good.stderr
    summary = json.loads(good.stdout)
    assert summary["broker"].startswith("mqtt://u@h:1883") and "pw" not in good.stdout
