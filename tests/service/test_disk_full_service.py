"""``lora-gw run`` with its state directory on a small, really full filesystem and the broker down.

The filesystem is a tmpfs the test mounts (as root, as CI runs); where mounting is not allowed the same
run uses a capped database (``[outbox] max_db_mb``, SQLite's max_page_count), which fails the same way.
``LORA_GW_DISK_FULL_HOLD_S`` sets how long the disk stays full (the issue's target: 600; default 4);
``LORA_GW_TEST_NO_MOUNT=1`` takes the capped-database path even where mounting works.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.pipeline.message import message_id

from .helpers import Collector
from .helpers import run_cli as cli
from .test_service import start, wait, write_config

HOLD_S = float(os.environ.get("LORA_GW_DISK_FULL_HOLD_S", "4"))


@pytest.fixture
def small_fs(tmp_path) -> Iterator[tuple[Path, bool]]:
    """A 4 MiB tmpfs (mounted: True), or a plain directory where mounting is not permitted (False)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and not os.environ.get("LORA_GW_TEST_NO_MOUNT")
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mnt, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path, leave: int = 0) -> Path:
    """Write a file until at most ``leave`` bytes are free, or (leave=0) the filesystem says ENOSPC."""
    filler = path / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while os.statvfs(path).f_bavail * os.statvfs(path).f_frsize - size >= leave:
                    os.write(fd, b"\xa5" * size)
    finally:
        os.close(fd)
    return filler


def stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return {message_id(n, f) for n, f in c.execute("SELECT node_id, fcnt FROM outbox")}


@pytest.mark.parametrize("floor", [True, False], ids=["below-the-floor", "enospc"])
def test_disk_full_with_the_broker_down_loses_no_stored_frame_and_never_exits(
    tmp_path, small_fs, broker_factory, floor
):
    """below-the-floor: 0.25 MB left under a 0.5 MB floor, so the registry stays writable; enospc: no
    floor and not a byte left, so SQLite itself meets "database or disk is full"."""
    mnt, mounted = small_fs
    broker = broker_factory(persistence=True)
    sub = Collector(broker.port, "lora/#", persistent_id="disk-full-consumer")
    config = write_config(tmp_path, broker.port, nodes=6)
    text = config.read_text().replace(f'state_dir = "{tmp_path / "state"}"', f'state_dir = "{mnt / "state"}"')
    if mounted:
        text += f"[outbox]\nmin_free_mb = {0.5 if floor else 0}\n"
    else:
        text += "[outbox]\nmin_free_mb = 0\nmax_db_mb = 0.04\n"
    config.write_text(text)
    db = mnt / "state" / "gateway.db"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    log = tmp_path / "gateway.log"
    proc = start(config, {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}, log=log)
    try:
        assert wait(lambda: len(sub.msg_ids()) >= 10, 30), log.read_text()[-2000:]
        broker.stop()
        assert wait(lambda: len(stored_ids(db)) >= 30, 30)
        filler = fill(mnt, leave=256 * 1024 if floor else 0) if mounted else None
        # full: the service goes on, counting what it cannot store, for as long as the disk stays full
        assert wait(lambda: b"DISK FULL" in drain(notify), 60), "no disk-full status reached systemd"
        before = stored_ids(db)
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert stored_ids(db) == before  # nothing stored, nothing lost while full
        added = cli(mnt / "state", "nodes", "add", "0x5151", "--name", "while-full")
        if mounted and not floor:  # not a byte left: fits in the WAL's slack, or a one-line refusal
            assert added.returncode in (0, 2) and "Traceback" not in added.stderr, added.stderr
            if added.returncode == 2:
                assert "database or disk is full" in added.stderr and len(added.stderr.splitlines()) == 1
        else:  # the floor kept the registry writable
            assert added.returncode == 0, added.stderr
        assert proc.poll() is None
        if filler is not None:
            filler.unlink()
        broker.start()
        assert wait(lambda: before <= set(sub.msg_ids()), 60), len(before - set(sub.msg_ids()))
        # storing resumes by itself once the backlog is delivered (capped) or space is back (tmpfs)
        # (no stats message may have arrived yet: the first can come after the broker is back)
        assert wait(lambda: (st := sub.json_on("/stats")) and not st[-1]["storage"]["disk_full"], 60)
        resumed = len(sub.msg_ids())
        assert wait(lambda: len(sub.msg_ids()) >= resumed + 10, 30), sub.json_on("/stats")[-1]
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    err = log.read_text()
    final = sub.json_on("/stats")[-1]  # published at the clean stop, after the last commit
    ids = set(sub.msg_ids())
    summary = {
        "filesystem": ("tmpfs 4 MiB" if mounted else "max_db_mb 0.04") + (", floor" if floor else ""),
        "hold_s": HOLD_S,
        "passed": final["passed"],
        "accepted": final["accepted"],
        "dropped_disk_full": final["dropped_disk_full"],
        "delivered_unique": len(ids),
    }
    print(json.dumps(summary))
    assert final["dropped_disk_full"] > 0 and final["pending_commit"] == 0
    assert final["passed"] == final["accepted"] + final["dropped_disk_full"]  # every frame counted once
    assert len(ids) == final["accepted"]  # every accepted frame delivered, and only those
    assert err.count("cannot store new frames") == 1 and err.count("storing frames again") == 1, err[-3000:]
    assert "Traceback" not in err
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    sub.close()


def drain(sock: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(BlockingIOError):
        while True:
            out += sock.recv(4096)
    return out
