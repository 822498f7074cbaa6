"""A backup taken while ``lora-gw run`` runs, restored on fresh state directories and on the original one:
every node's next frame is accepted and no frame the gateway had accepted is accepted again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
from pathlib import Path

from gateway.frames import FrameDecoder, FrameError, NodeRegistry
from gateway.frames.encoder import FrameEncoder

from .helpers import Collector
from .helpers import run_cli as cli
from .test_service import start, wait, write_config

SECURED = 0x5101  # the emulator's first node; registered with a key before the service starts


def _published(sub: Collector) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for msg_id in sub.msg_ids():
        node, fcnt = msg_id.split("-")[:2]
        out.setdefault(int(node, 16), []).append(int(fcnt))
    return out


def _accepts(db: Path, node_id: int, key: bytes | None, fcnt: int, epoch: int) -> bool:
    """Whether a gateway on ``db`` accepts node ``node_id``'s frame ``fcnt`` made in key epoch ``epoch``."""
    with NodeRegistry(db) as registry:
        decoder = FrameDecoder(registry.nodes())
    frame = FrameEncoder(node_id, key, key_epoch=epoch).encode(b"\x01\x02", fcnt=fcnt)
    try:
        decoder.decode(frame)
    except FrameError:
        return False
    return True


def _restore(archive: Path, state: Path, *extra: str) -> dict:
    r = cli(state, "state", "restore", str(archive), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_backup_while_running_restores_without_accepting_any_frame_twice(tmp_path, broker):
    config = write_config(tmp_path, broker.port, nodes=3)
    snaps = tmp_path / "snapshots"
    with config.open("a") as fh:  # periodic snapshots: the first is taken soon after the start
        fh.write(f'[state]\nbackup_dir = "{snaps}"\nbackup_interval_h = 1\nbackup_keep = 2\n')
    state = tmp_path / "state"
    key_file = tmp_path / "k.key"
    key_file.write_text("000102030405060708090a0b0c0d0e0f\n")
    key_file.chmod(0o600)
    key = bytes(range(16))
    r = cli(state, "nodes", "add", hex(SECURED), "--name", "sim-1", "--key-file", str(key_file))
    assert r.returncode == 0, r.stderr
    sub = Collector(broker.port, "lora/+/nodes/#")
    log = tmp_path / "gateway.log"
    proc = start(config, log=log)
    archive = tmp_path / "gw.lgwbak"
    try:
        assert wait(lambda: len(sub.msg_ids()) >= 15), log.read_text()[-2000:]
        r = cli(state, "state", "backup", str(archive), "--config", str(config), "--json")
        assert r.returncode == 0, r.stderr
        made = json.loads(r.stdout)
        assert made["service_running"] is True and made["nodes"] == 3
        assert made["config_files"] == ["gateway.toml"]
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        at_backup = len(sub.msg_ids())
        # a restore under the running service is refused, in one line
        r = cli(state, "state", "restore", str(archive))
        assert r.returncode == 2 and "in use by lora-gw run" in r.stderr and r.stderr.count("\n") == 1
        # frames accepted after the backup: the backup's counters are behind them
        assert wait(
            lambda: (
                all(len(v) >= 8 for v in _published(sub).values()) and len(sub.msg_ids()) >= at_backup + 15
            )
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "credentials: none" in text  # the startup line names the credentials source
    assert f"backups every 1 h to {snaps}" in text
    taken = sorted(snaps.glob("lora-gw-gwt-*.lgwbak"))
    assert len(taken) == 1 and stat.S_IMODE(taken[0].stat().st_mode) == 0o600
    with sqlite3.connect(f"file:{state / 'gateway.db'}?mode=ro", uri=True) as c:
        original = dict(c.execute("SELECT node_id, next_fcnt FROM nodes"))
    # a clean stop published everything it accepted: the consumer's last ids are the gateway's counters
    assert sub.wait_for(lambda: {n: max(f) + 1 for n, f in _published(sub).items()} == original), original
    published = _published(sub)
    sub.close()
    assert set(published) == {0x5101, 0x5102, 0x5103}

    # 1. a fresh state directory (the SD card died), nothing newer known: the secured node gets a new key
    # epoch; none of its frames of the old epoch verify, its first frame of the new epoch does
    fresh = tmp_path / "fresh"
    doc = _restore(archive, fresh)
    by_node = {int(n["node_id"], 16): n for n in doc["nodes"]}
    assert by_node[SECURED]["counter"] == "new_epoch" and by_node[SECURED]["key_epoch"] == 1
    db = fresh / "gateway.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert all(not _accepts(db, SECURED, key, f, 0) for f in published[SECURED])
    assert not _accepts(db, SECURED, key, max(published[SECURED]) + 1, 0)  # the old epoch is closed
    assert _accepts(db, SECURED, key, 0, 1)

    # the periodic snapshot restores too (taken at the start: the secured node gets a new epoch)
    doc = _restore(taken[0], tmp_path / "from-snapshot")
    assert {int(n["node_id"], 16): n["counter"] for n in doc["nodes"]}[SECURED] == "new_epoch"

    # 2. with the consumer's last message ids as evidence: every node continues right after them
    seen = tmp_path / "seen.txt"
    seen.write_text("".join(f"{n:08x}-{f}\n" for n, fs in published.items() for f in fs))
    evidenced = tmp_path / "evidenced"
    doc = _restore(archive, evidenced, "--seen", str(seen))
    assert {int(n["node_id"], 16): n["next_fcnt"] for n in doc["nodes"]} == original  # exact, not behind
    db = evidenced / "gateway.db"
    for node_id, fcnts in published.items():
        k = key if node_id == SECURED else None
        last = max(fcnts)
        assert {n["counter"] for n in doc["nodes"] if int(n["node_id"], 16) == node_id} == {"seen"}
        assert _accepts(db, node_id, k, last + 1, 0), node_id  # the node's next frame
        assert not any(_accepts(db, node_id, k, f, 0) for f in fcnts), node_id  # nothing accepted before

    # 3. onto the original state directory, which has seen higher counters: they are kept
    doc = _restore(archive, state)
    assert {int(n["node_id"], 16): n["next_fcnt"] for n in doc["nodes"]} == original
    assert {n["counter"] for n in doc["nodes"]} == {"target"}
    assert any(Path(p).name.startswith("gateway.db.pre-restore-") for p in doc["set_aside"])
    db = state / "gateway.db"
    for node_id, fcnts in published.items():
        k = key if node_id == SECURED else None
        assert _accepts(db, node_id, k, original[node_id], 0)
        assert not any(_accepts(db, node_id, k, f, 0) for f in fcnts)
    assert os.path.exists(state / "gateway.db.created")
