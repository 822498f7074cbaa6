"""Operator CLI commands in other processes beside a running ``lora-gw run`` on the same state directory.

Reproduces the lost-WAL bug: the gateway used to open and close ``gateway.db`` with ``os.open`` while its
SQLite connections were open, which drops every POSIX lock the process holds on the file; the next CLI
process to close its connection then believed it was the last one, checkpointed and deleted the WAL the
service was still writing to (stale counters, lost registry changes, a corrupt index after ``kill -9``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from .helpers import Collector
from .helpers import run_cli as cli
from .test_service import REPO, start, wait, write_config

# The bug showed at the first CLI command; 20 s of commands keeps the suite under its 5-minute budget.
# LORA_GW_SOAK_S=60 gives the full minute (run by hand).
SOAK_S = float(os.environ.get("LORA_GW_SOAK_S", "20"))
# ... and at least this many commands (every kind twice), however slow the host: each is a new Python
# process (~0.7 s; several seconds when every core is busy), so a busy host soaks longer, up to 4x SOAK_S
MIN_COMMANDS = 10
MODEL = REPO / "gateway" / "codec" / "data" / "weather-demo.npz"


def published_counters(sub: Collector) -> dict[int, int]:
    """Highest counter published per node: its stored next_fcnt can only be above it."""
    top: dict[int, int] = defaultdict(lambda: -1)
    for m in sub.json_on("/telemetry"):
        node, fcnt = m["msg_id"].split("-")
        top[int(node, 16)] = max(top[int(node, 16)], int(fcnt))
    return dict(top)


def db_counters(db: Path) -> dict[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return dict(c.execute("SELECT node_id, next_fcnt FROM nodes"))


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def test_cli_beside_the_running_service_keeps_its_wal_counters_and_registry(tmp_path, broker_factory):
    broker = broker_factory(persistence=True)
    sub = Collector(broker.port, "lora/+/nodes/#", persistent_id="cli-beside-service")
    config = write_config(tmp_path, broker.port, nodes=4)
    state = tmp_path / "state"
    db, wal, shm = state / "gateway.db", state / "gateway.db-wal", state / "gateway.db-shm"
    log = tmp_path / "gateway.log"
    proc = start(config, log=log)
    added: list[str] = []
    resets: dict[str, int] = {}
    commands = 0
    try:
        assert wait(lambda: len(sub.msg_ids()) >= 10), log.read_text()[-2000:]
        started = time.monotonic()
        deadline, cap = started + SOAK_S, started + 4 * SOAK_S
        while time.monotonic() < deadline or (commands < MIN_COMMANDS and time.monotonic() < cap):
            i = commands
            before = published_counters(sub)
            kind = i % 5
            if kind == 0:
                out = cli(state, "nodes", "list", "--json")
                assert out.returncode == 0, out.stderr
                seen = {n["node_id"]: n["next_fcnt"] for n in json.loads(out.stdout)}
                for node, fcnt in before.items():
                    assert seen[node] > fcnt, f"CLI read a stale counter for node {node:08x}"
            elif kind == 1:
                name = f"cli{i}"
                out = cli(state, "nodes", "add", str(0x7000 + i), "--name", name)
                assert out.returncode == 0, out.stderr
                added.append(name)
            elif kind == 2:
                out = cli(state, "nodes", "reset-counter", added[-1], "--next", str(i))
                assert out.returncode == 0, out.stderr
                resets[added[-1]] = i
            elif kind == 3:
                out = cli(state, "model", "install", str(MODEL))
                assert out.returncode == 0, out.stderr
            else:
                out = cli(state, "decode", "03670110056700FF", "--codec", "lpp", "--json")
                assert out.returncode == 0, out.stderr
            commands += 1
            assert proc.poll() is None, log.read_text()[-2000:]
            assert wal.exists() and shm.exists(), f"the service's WAL vanished after command {i}"
        assert commands >= MIN_COMMANDS
        print(json.dumps({"soak_s": SOAK_S, "cli_commands": commands, "wal_lost": 0}))
        assert integrity(db) == "ok"
        before_kill = published_counters(sub)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # after kill -9: the registry changes are there and no counter fell back below what was published
    counters = db_counters(db)
    assert integrity(db) == "ok"
    for node, fcnt in before_kill.items():
        assert counters[node] > fcnt, f"node {node:08x}: counter fell back after kill -9"
    names = {n["name"]: n for n in json.loads(cli(state, "nodes", "list", "--json").stdout)}
    assert set(added) <= set(names)
    # a restart (and a clean stop) keeps them too, and the service goes on from the stored counters
    proc = start(config, log=log)
    try:
        # up and publishing: a counter only the new process can have produced
        assert wait(lambda: any(published_counters(sub).get(n, -1) >= c for n, c in counters.items()), 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert integrity(db) == "ok"
    names = {n["name"]: n for n in json.loads(cli(state, "nodes", "list", "--json").stdout)}
    assert set(added) <= set(names)
    for name, next_fcnt in resets.items():
        assert (names[name]["next_fcnt"], names[name]["counter_epoch"]) == (next_fcnt, 1)
    ids = sub.msg_ids()
    assert len(ids) - len(set(ids)) <= 20  # at-least-once: only frames in flight at the kill come twice
    sub.close()
