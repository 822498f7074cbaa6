"""gateway.backup without a service: encryption, file modes, the lock, --seen, periodic snapshots."""

from __future__ import annotations

import gzip
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gateway import backup
from gateway.backup import BackupError, ServiceLock, Snapshotter
from gateway.cli import main as cli
from gateway.frames import Node, NodeRegistry

KEY = bytes(range(16))


def _state(tmp_path, nodes=((0x2A, KEY, 100),)):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with NodeRegistry(state / "gateway.db") as reg:
        for nid, key, fcnt in nodes:
            reg.add(Node(node_id=nid, name=f"n{nid}", key=key))
            reg.set_next_fcnt(nid, fcnt)
    return state


def _counters(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return {n: (f, k) for n, f, k in c.execute("SELECT node_id, next_fcnt, key_epoch FROM nodes")}


def test_encrypted_backup_is_private_and_needs_the_passphrase(tmp_path):
    state = _state(tmp_path)
    out = tmp_path / "b.lgwbak"
    backup.backup(state, out, passphrase=b"correct horse", scrypt_log2_n=10)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and backup.is_encrypted(out)
    blob = out.read_bytes()
    inner = backup.unseal(blob, b"correct horse")  # the gzipped tar: it holds the key in the database
    assert b"000102030405060708090a0b0c0d0e0f" in gzip.decompress(inner)
    assert inner[:64] not in blob and b"000102030405060708090a0b0c0d0e0f" not in blob
    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.restore(out, tmp_path / "r1", b"wrong")
    with pytest.raises(BackupError, match="is encrypted"):
        backup.restore(out, tmp_path / "r1")
    tampered = tmp_path / "t.lgwbak"
    blob = bytearray(out.read_bytes())
    blob[-40] ^= 1
    tampered.write_bytes(bytes(blob))
    with pytest.raises(BackupError, match="changed or damaged"):
        backup.restore(tampered, tmp_path / "r2", b"correct horse")
    result = backup.restore(out, tmp_path / "r3", b"correct horse", seen={0x2A: 150})
    assert _counters(result.database) == {0x2A: (151, 0)}
    with pytest.raises(BackupError, match="exists"):
        backup.backup(state, out)


def test_passphrase_file_must_be_private(tmp_path):
    f = tmp_path / "pass"
    f.write_text("secret\n")
    f.chmod(0o644)
    with pytest.raises(BackupError, match="chmod 600"):
        backup.read_passphrase_file(f)
    f.chmod(0o600)
    assert backup.read_passphrase_file(f) == b"secret"


def test_restore_refused_while_the_lock_is_held(tmp_path):
    state = _state(tmp_path)
    out = tmp_path / "b.lgwbak"
    backup.backup(state, out)
    with ServiceLock(state, "lora-gw run"):
        assert backup.service_running(state)
        with pytest.raises(BackupError, match="in use by lora-gw run"):
            backup.restore(out, state)
    assert not backup.service_running(state)
    backup.restore(out, state)


def test_restore_keeps_the_targets_higher_counters_and_retires_keys_added_after_the_backup(tmp_path):
    state = _state(tmp_path)
    out = tmp_path / "b.lgwbak"
    backup.backup(state, out)
    other = bytes(range(16, 32))
    with NodeRegistry(state / "gateway.db") as reg:
        reg.set_next_fcnt(0x2A, 500)
        reg.add(Node(node_id=0x2B, name="late", key=other))
        reg.set_next_fcnt(0x2B, 77)
    result = backup.restore(out, state)
    assert _counters(result.database) == {0x2A: (500, 0)}
    assert result.retired_from_target == 1
    with NodeRegistry(result.database) as reg:
        old = reg.retired(other)
    assert old is not None and old.next_fcnt == 77  # re-adding that key resumes there, never at 0


def test_keep_counters_leaves_the_backups_counters(tmp_path):
    out = tmp_path / "b.lgwbak"
    backup.backup(_state(tmp_path), out)
    kept = backup.restore(out, tmp_path / "kept", new_epoch=False)
    assert _counters(kept.database) == {0x2A: (100, 0)} and not kept.tell_nodes
    epoch = backup.restore(out, tmp_path / "epoch")
    assert _counters(epoch.database) == {0x2A: (0, 1)} and [n.node_id for n in epoch.tell_nodes] == [0x2A]


def test_parse_seen_reads_message_ids_json_lines_and_pairs():
    text = '00005101-7\n00005101-9\n{"msg_id": "00005102-3"}\n# comment\n0x5103=12\n'
    assert backup.parse_seen(text) == {0x5101: 9, 0x5102: 3, 0x5103: 12}
    with pytest.raises(BackupError, match="neither a message id"):
        backup.parse_seen("garbage\n")


def test_snapshots_on_a_virtual_clock_keep_the_newest(tmp_path):
    state = _state(tmp_path)
    now = [1_800_000_000.0]
    snaps = Snapshotter(state, tmp_path / "snaps", "gw", 1.0, 2, clock=lambda: now[0])
    taken = []
    for _ in range(4):
        taken.append(snaps.tick())
        assert snaps.tick() is None  # not due again until an interval has passed
        now[0] += 3600
    assert all(taken) and snaps.taken == 4
    left = backup.snapshots(tmp_path / "snaps", "gw")
    assert left == taken[-2:]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in left)
    # a restart finds the newest and waits for the rest of its interval
    again = Snapshotter(state, tmp_path / "snaps", "gw", 1.0, 2, clock=lambda: now[0])
    assert again.next_due > now[0] - 3600


def test_a_failing_snapshot_is_logged_not_raised(tmp_path, caplog):
    state = _state(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    snaps = Snapshotter(state, blocker / "snaps", "gw", 1.0, 2, clock=lambda: 0.0)
    assert snaps.tick() is None and snaps.failed == 1
    assert "snapshot into" in caplog.text


def test_cli_backup_and_restore_with_a_passphrase_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(backup.PASSPHRASE_ENV, raising=False)
    state = _state(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    out = tmp_path / "b.lgwbak"
    assert (
        cli.main(["state", "backup", str(out), "--state-dir", str(state), "--passphrase-file", str(pw)]) == 0
    )
    assert "encrypted" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert cli.main(["state", "restore", str(out), "--state-dir", str(fresh)]) == 2  # no passphrase, no tty
    assert "passphrase" in capsys.readouterr().err
    monkeypatch.setenv(backup.PASSPHRASE_ENV, "s3cret")
    assert cli.main(["--state-dir", str(fresh), "state", "restore", str(out)]) == 0
    text = capsys.readouterr().out
    assert "new key epoch 1 from counter 0" in text and "0x0000002a" in text


def test_a_target_behind_the_backup_is_no_evidence_and_secrets_file_keys_count_as_secured(tmp_path):
    out = tmp_path / "b.lgwbak"
    state = _state(tmp_path, nodes=((0x2A, KEY, 100), (0x2B, None, 40)))
    backup.backup(state, out)
    # a state directory re-created after the backup: the same nodes, counters behind the backup's
    (tmp_path / "t").mkdir()
    behind = _state(tmp_path / "t", nodes=((0x2A, KEY, 3), (0x2B, None, 1)))
    result = backup.restore(out, behind, keyed=frozenset({0x2B}))  # 0x2B's key is in the secrets file
    assert _counters(result.database) == {0x2A: (0, 1), 0x2B: (0, 1)}
    assert {n.how for n in result.nodes} == {"new_epoch"}


def test_root_backs_up_a_service_users_state_without_leaving_root_owned_files(tmp_path):
    """``sudo lora-gw state backup /root/x``: the copy runs as the state's owner (no root-owned -wal/-shm
    that would lock the service out), the file is written by root where root may write."""
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("run the tests as root (CI does): this one checks what sudo does")
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        state = _state(base)
        for p in [state, *state.iterdir()]:
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
        out = tmp_path / "root-only.lgwbak"  # under /tmp/pytest-of-root (0700): nobody cannot write here
        r = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "state", "backup", str(out), f"--state-dir={state}"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert r.returncode == 0, r.stderr
        assert out.stat().st_uid == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
        assert {p.name: p.stat().st_uid for p in state.iterdir() if p.stat().st_uid != nobody.pw_uid} == {}
        restored = backup.restore(out, tmp_path / "r", new_epoch=False)
        assert _counters(restored.database) == {0x2A: (100, 0)}
        # root restores it in place from where only root can read: what it creates goes to the owner
        r = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "state", "restore", str(out), f"--state-dir={state}"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert r.returncode == 0, r.stderr
        owners = {p.name: p.stat().st_uid for p in state.iterdir()}
        assert {n for n, uid in owners.items() if uid != nobody.pw_uid} == set(), owners
        assert {"gateway.db", "gateway.db.created", "gateway.lock"} <= set(owners)
    finally:
        shutil.rmtree(base)


def test_a_second_service_on_the_same_state_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LORA_GW_UNIT_FILE", str(tmp_path / "no-unit"))
    state = _state(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_dir = "{state}"\n[radio]\nbackend = "emulator"\n')
    with ServiceLock(state, "lora-gw run"):
        assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lora-gw: state: ") and "in use by lora-gw run" in err and err.count("\n") == 1


def test_a_node_re_keyed_after_the_backup_leaves_its_newer_key_retired(tmp_path):
    state = _state(tmp_path)
    out = tmp_path / "b.lgwbak"
    backup.backup(state, out)
    newer = bytes(range(32, 48))
    with NodeRegistry(state / "gateway.db") as reg:
        reg.remove(0x2A)
        reg.add(Node(node_id=0x2A, name="n42", key=newer))
        reg.set_next_fcnt(0x2A, 9)
    result = backup.restore(out, state)
    assert result.retired_from_target == 1
    with NodeRegistry(result.database) as reg:
        assert reg.retired(newer).next_fcnt == 9
        assert reg.retired(KEY) is None  # the restored node uses it again


def test_the_lock_of_another_user_still_locks(tmp_path):
    """Root ran the service once and left a root-owned gateway.lock: the service user can still take it."""
    import pwd
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("run the tests as root (CI does)")
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        ServiceLock(state, "root's run").acquire().release()  # root-owned
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        held_r, held_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the service user's process
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                lock = ServiceLock(state, "lora-gw run").acquire()
                os.write(held_w, b"1")
                os.read(done_r, 1)
                lock.release()
                code = 0
            finally:
                os._exit(code)
        os.close(held_w)
        os.close(done_r)
        assert os.read(held_r, 1) == b"1"
        assert backup.service_running(state)  # held by the other user's process
        os.write(done_w, b"x")
        assert os.waitpid(pid, 0)[1] == 0
        assert not backup.service_running(state)
    finally:
        shutil.rmtree(base)


def test_kept_history_rows_survive_a_restore_and_raise_no_counter(tmp_path):
    """Delivered learned-model rows kept as the history are in the backup and stay after a restore
    with ``seen`` (only rows still to deliver that a consumer has are dropped), and do not count as
    accepted-but-unpublished frames when counters are raised (they may be from before a reset)."""
    from gateway.sinks.history import HistoryReader, HistorySettings
    from gateway.sinks.outbox import Outbox

    from .frames_util import accepted

    state = _state(tmp_path, nodes=((0x2A, KEY, 0),))
    ob = Outbox(state / "gateway.db", history=HistorySettings())
    ids = [ob.add(accepted(0x2A, f, codec="model", model=(4, 9))) for f in (300, 301)]
    ob.commit()
    for rid in ids:
        ob.acknowledge(rid)  # delivered and kept
    ob.commit()
    with NodeRegistry(state / "gateway.db") as reg:
        reg.set_next_fcnt(0x2A, 5)  # as after `nodes reset-counter`: the kept rows are from before it
    ob.add(accepted(0x2A, 10, codec="model", model=(4, 9)))  # still to deliver
    ob.close()
    out = tmp_path / "b.lgwbak"
    assert backup.backup(state, out).outbox_rows == 1  # the manifest counts rows still to deliver
    kept = backup.restore(out, tmp_path / "k", new_epoch=False)
    assert _counters(kept.database)[0x2A][0] == 11  # above the row still to deliver, not above 301
    result = backup.restore(out, tmp_path / "r", new_epoch=False, seen={0x2A: 10})
    assert _counters(result.database)[0x2A][0] == 11
    with HistoryReader(result.database) as r:
        assert [h.fcnt for h in r.rows()] == [300, 301]  # the undelivered 10 (seen) is dropped
