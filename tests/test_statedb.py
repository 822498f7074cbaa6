"""The state database is created once, never silently again, and failed writes report their real cause."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway import statedb
from gateway.cli.main import main
from gateway.frames import Node, NodeRegistry
from gateway.sinks.outbox import Outbox
from gateway.statedb import StateDbError

REPO = Path(__file__).resolve().parents[1]


def made(state: Path) -> Path:
    """A state directory whose database was created and holds one node."""
    db = state / "gateway.db"
    with NodeRegistry(db) as reg:
        reg.add(Node(7, "seven"))
    return db


def test_fresh_directory_gets_a_private_wal_database_and_a_marker(tmp_path):
    db = tmp_path / "gateway.db"
    con = statedb.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA page_size").fetchone()[0] == statedb.PAGE_SIZE
    con.close()
    assert db.stat().st_size > 0 and stat.S_IMODE(db.stat().st_mode) == 0o600
    assert "state init" in statedb.marker_path(db).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.db", "gateway.db.created"]


def test_first_starts_racing_share_one_database(tmp_path):
    db = tmp_path / "gateway.db"
    errors: list[BaseException] = []

    def open_and_add(i: int) -> None:
        try:
            with NodeRegistry(db) as reg:
                reg.add(Node(i, f"n{i}"))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with NodeRegistry(db) as reg:
        assert len(reg.nodes()) == 8
    assert not [p for p in tmp_path.iterdir() if ".new-" in p.name]


@pytest.mark.parametrize("opener", [NodeRegistry, Outbox], ids=["registry", "outbox"])
def test_an_emptied_database_is_refused_not_recreated(tmp_path, opener):
    db = made(tmp_path)
    os.truncate(db, 0)
    for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        side.unlink(missing_ok=True)
    with pytest.raises(StateDbError, match=r"is empty \(0 bytes.*restore it from a backup.*state init"):
        opener(db)
    assert db.stat().st_size == 0  # left as it was, for whoever wants to look


def test_a_zero_byte_file_from_an_older_version_is_refused_too(tmp_path):
    db = tmp_path / "gateway.db"
    db.touch()  # no marker: the truncated database of a gateway that predates markers
    with pytest.raises(StateDbError, match="is empty"):
        NodeRegistry(db)


def test_a_deleted_database_is_refused_when_the_directory_shows_it_existed(tmp_path):
    db = made(tmp_path)
    db.unlink()
    with pytest.raises(StateDbError, match="is missing but this state directory had one, created 20"):
        NodeRegistry(db)
    assert not db.exists()


def test_a_database_missing_beside_its_wal_is_refused(tmp_path):
    db = tmp_path / "gateway.db"
    Path(f"{db}-wal").write_bytes(b"\0" * 64)
    with pytest.raises(StateDbError, match=r"write-ahead log gateway\.db-wal is still there"):
        Outbox(db)


def test_a_deleted_wal_beside_its_shm_is_refused(tmp_path):
    db = made(tmp_path)
    Path(f"{db}-shm").write_bytes(b"\0" * 32768)  # what a crash leaves, less the -wal someone deleted
    Path(f"{db}-wal").unlink(missing_ok=True)
    with pytest.raises(StateDbError, match=r"gateway\.db-wal was deleted"):
        NodeRegistry(db)


def test_a_database_from_before_markers_is_adopted(tmp_path):
    db = tmp_path / "gateway.db"
    sqlite3.connect(db).executescript("CREATE TABLE t (x); DROP TABLE t;")
    NodeRegistry(db).close()
    assert statedb.marker_path(db).exists()


def test_lora_gw_run_stops_with_one_line_on_an_emptied_database(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)  # the service refuses a state directory others can read
    made(state)
    os.truncate(state / "gateway.db", 0)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "g"\nstate_dir = "{state}"\n[radio]\nbackend = "emulator"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("lora-gw:")]
    assert len(lines) == 1 and "is empty" in lines[0] and "lora-gw state init" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert (state / "gateway.db").stat().st_size == 0


def test_state_init_creates_keeps_and_replaces_deliberately(tmp_path, capsys):
    state = tmp_path / "s"
    assert main(["--state-dir", str(state), "state", "init"]) == 0
    assert "created" in capsys.readouterr().out
    with NodeRegistry(state / "gateway.db") as reg:
        reg.add(Node(1, "one"))
    assert main(["--state-dir", str(state), "state", "init"]) == 0  # a usable database is left alone
    assert "nothing to do" in capsys.readouterr().out
    with NodeRegistry(state / "gateway.db") as reg:
        assert [n.name for n in reg.nodes()] == ["one"]
    os.truncate(state / "gateway.db", 0)
    assert main(["--state-dir", str(state), "nodes", "list"]) == 2
    assert "state init" in capsys.readouterr().err
    assert main(["--state-dir", str(state), "state", "init"]) == 0
    out = capsys.readouterr().out
    assert "new, empty" in out and "set aside" in out
    lost = [p for p in state.iterdir() if ".lost-" in p.name]
    assert len(lost) == 1 and lost[0].stat().st_size == 0  # kept, never deleted
    assert main(["--state-dir", str(state), "nodes", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_state_init_keeps_a_database_whose_wal_was_deleted(tmp_path, capsys):
    db = made(tmp_path)
    Path(f"{db}-shm").write_bytes(b"\0" * 32768)
    assert main(["--state-dir", str(tmp_path), "state", "init"]) == 0
    assert "kept" in capsys.readouterr().out
    with NodeRegistry(db) as reg:
        assert reg.get(7) is not None


def test_state_init_sets_aside_a_non_database_only_with_force(tmp_path, capsys):
    db = tmp_path / "gateway.db"
    db.write_bytes(b"not sqlite at all" * 64)
    assert main(["--state-dir", str(tmp_path), "state", "init"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["--state-dir", str(tmp_path), "state", "init", "--force", "--json"]) == 0
    assert '"action": "recreated"' in capsys.readouterr().out
    NodeRegistry(db).close()


def test_transaction_reports_the_real_cause_after_sqlite_rolled_back(tmp_path):
    con = statedb.connect(tmp_path / "gateway.db")
    con.execute("CREATE TABLE t (x)")
    con.execute("PRAGMA max_page_count = 3")
    full = pytest.raises(sqlite3.OperationalError, match="database or disk is full")
    with full as info, statedb.transaction(con) as db:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert statedb.is_disk_full(info.value)
    assert not con.in_transaction
    with statedb.transaction(con) as db:  # and the connection goes on
        db.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1
