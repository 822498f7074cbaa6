from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from gateway.frames.registry import Node, NodeRegistry
from gateway.sinks.outbox import SCHEMA_VERSION, Outbox, OutboxError, OutboxSettings

from .frames_util import RADIO, accepted


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gateway.db"
    reg = NodeRegistry(path)
    reg.add(Node(node_id=42, name="weather"))
    reg.add(Node(node_id=7, name="soil"))
    reg.close()
    return path


def next_fcnt(path, node_id):
    with sqlite3.connect(path) as c:
        return c.execute("SELECT next_fcnt FROM nodes WHERE node_id=?", (node_id,)).fetchone()[0]


def test_group_commit_by_count_and_by_time_with_counters_in_same_transaction(db):
    clock = FakeClock()
    ob = Outbox(db, OutboxSettings(commit_frames=3, commit_interval_ms=50), clock=clock)
    ob.add(accepted(42, 10))
    ob.add(accepted(7, 3))
    assert ob.maybe_commit() == []  # neither bound reached: nothing durable, nothing to publish
    assert next_fcnt(db, 42) == 0 and ob.count() == 0
    ob.add(accepted(42, 11))
    stored = ob.maybe_commit()  # 3 frames: count bound
    assert [s.frame.fcnt for s in stored] == [10, 3, 11]
    assert next_fcnt(db, 42) == 12 and next_fcnt(db, 7) == 4 and ob.count() == 3
    ob.add(accepted(7, 4))
    assert ob.seconds_to_commit() == pytest.approx(0.05)
    clock.t += 0.049
    assert ob.maybe_commit() == []
    clock.t += 0.002
    assert [s.frame.fcnt for s in ob.maybe_commit()] == [4]  # time bound
    assert next_fcnt(db, 7) == 5
    assert ob.stats.commits == 2
    ob.close()


def test_counter_update_does_not_undo_an_operator_reset(db):
    """A frame judged before `nodes reset-counter` must not write its (higher) counter over the reset."""
    import dataclasses

    ob = Outbox(db, OutboxSettings(commit_frames=1000, commit_interval_ms=60000))
    ob.add(dataclasses.replace(accepted(42, 500), counter_epoch=0))
    reg = NodeRegistry(db)
    reg.reset_counter(42)  # the operator, from another process, while the frame waits for its commit
    reg.close()
    stored = ob.commit()
    assert [s.frame.fcnt for s in stored] == [500]  # the frame itself is kept and published
    assert next_fcnt(db, 42) == 0  # but the reset stands
    assert ob.stats.counters_unmatched == 1
    ob.add(dataclasses.replace(accepted(42, 3), counter_epoch=1))  # judged under the new epoch
    ob.commit()
    assert next_fcnt(db, 42) == 4
    ob.close()


def test_rows_survive_reopen_oldest_first_with_all_fields(db):
    ob = Outbox(db)
    frames = [accepted(42, n, payload=bytes([n])) for n in range(5)] + [
        accepted(7, 0, codec="model", model=(3, 5))
    ]
    for f in frames:
        ob.add(f)
    ob.commit()
    ob.close()
    ob = Outbox(db)
    rows = ob.load(0, 100)
    assert [r.frame for r in rows] == frames  # every field round-trips, in insertion order
    assert [r.row_id for r in rows] == sorted(r.row_id for r in rows)
    assert rows[-1].frame.radio == RADIO
    assert [r.frame.fcnt for r in ob.load(rows[2].row_id, 2)] == [3, 4]
    ob.close()


def test_delete_only_after_acknowledge_and_waiting_state(db):
    clock = FakeClock()
    ob = Outbox(db, OutboxSettings(commit_frames=1, delete_interval_ms=1000), clock=clock)
    ob.add(accepted(42, 1))
    (a,) = ob.maybe_commit()
    ob.add(accepted(42, 2))
    (b,) = ob.maybe_commit()
    ob.acknowledge(a.row_id)
    assert ob.maybe_commit() == [] and ob.exists(a.row_id)  # deletes wait for their interval ...
    ob.add(accepted(42, 3))
    ob.maybe_commit()  # ... or ride along with the next frame commit
    assert not ob.exists(a.row_id) and ob.exists(b.row_id)
    ob.mark_waiting(b.row_id)
    clock.t += 1.0
    ob.maybe_commit()
    assert [r.frame.fcnt for r in ob.load(0, 10)] == [3]
    waiting = ob.load_waiting(0, 10)
    assert [(r.frame.fcnt, r.waiting_model) for r in waiting] == [(2, True)]
    ob.close()


def test_size_bound_drops_oldest_counted(db, caplog):
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=100))
    for n in range(130):
        ob.add(accepted(42, n))
    ob.commit()
    assert ob.count() == 100 and ob.stats.dropped_size == 30
    assert ob.load(0, 1)[0].frame.fcnt == 30
    assert "dropped the 30 oldest" in caplog.text
    ob.close()


def test_age_bound_drops_old_rows_counted(db):
    now_ms = 1_700_000_100_000
    ob = Outbox(db, OutboxSettings(max_age_s=60.0), wall_ms=lambda: now_ms)
    ob.add(accepted(42, 1, utc_ms=now_ms - 61_000))
    ob.add(accepted(42, 2, utc_ms=now_ms - 59_000))
    ob.commit()
    assert ob.drop_expired() == 1
    assert [r.frame.fcnt for r in ob.load(0, 10)] == [2] and ob.stats.dropped_age == 1
    ob.close()


def test_synchronous_setting_is_applied_and_validated(db):
    ob = Outbox(db, OutboxSettings(synchronous="full"))
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ob.close()
    ob = Outbox(db)
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    ob.close()
    with pytest.raises(OutboxError, match=r"outbox\.synchronous"):
        Outbox(db, OutboxSettings(synchronous="off"))


def test_sigkill_after_commit_keeps_frames_and_counter_together(db):
    # A child process commits 3 frames, queues 2 more (not yet committed) and is SIGKILLed.
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[2])!r})
        from gateway.sinks.outbox import Outbox, OutboxSettings
        from tests.service.frames_util import accepted
        ob = Outbox({str(db)!r}, OutboxSettings(commit_frames=1000, commit_interval_ms=60000))
        for n in range(3):
            ob.add(accepted(42, n))
        ob.commit()
        for n in range(3, 5):
            ob.add(accepted(42, n))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == -9, proc.stderr.decode()
    ob = Outbox(db)
    assert [r.frame.fcnt for r in ob.load(0, 10)] == [0, 1, 2]
    assert next_fcnt(db, 42) == 3  # the counter matches exactly what was stored
    ob.close()


def test_small_pages_new_file_converted_file_and_busy_file(tmp_path):
    fresh = tmp_path / "fresh.db"
    ob = Outbox(fresh)
    assert ob._db.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert oct(fresh.stat().st_mode & 0o777) == "0o600"  # shares the file with node keys
    ob.close()
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)  # an older version's database, with SQLite's default 4 KiB pages
    con.execute("PRAGMA journal_mode = WAL")
    con.close()
    reg = NodeRegistry(old)
    reg.add(Node(node_id=1, name="a"))
    busy = Outbox(old)  # the registry's connection is still open: no conversion, no harm
    assert busy._db.execute("PRAGMA page_size").fetchone()[0] == 4096
    busy.add(accepted(1, 0))
    busy.commit()
    busy.close()
    reg.close()
    ob = Outbox(old)  # alone: converted, contents kept, WAL again
    assert ob._db.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r.frame.fcnt for r in ob.load(0, 10)] == [0]
    ob.close()
    with NodeRegistry(old) as reg:
        assert reg.get(1).next_fcnt == 1


V1_OUTBOX = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL, fcnt INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, kind INTEGER NOT NULL, model INTEGER,
    payload BLOB NOT NULL, rssi_dbm10 INTEGER NOT NULL, snr_db4 INTEGER NOT NULL, freq_hz INTEGER NOT NULL,
    freq_error_hz INTEGER NOT NULL, sf INTEGER NOT NULL, bw_hz INTEGER NOT NULL, cr INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
INSERT INTO outbox VALUES (5, 42, 3, 0, 1700000000000, 1, NULL, x'0167', -900, 30, 868100000, 0, 7, 125000,
    5, 0);
INSERT INTO outbox VALUES (6, 42, 4, 1, 1700000000000, 1, NULL, x'0167', -900, 30, 868100000, 0, 7, 125000,
    5, 0);
INSERT OR REPLACE INTO schema_versions (component, version) VALUES ('outbox', 1);
"""


def test_v1_outbox_migrates_in_place_and_parks_rows_that_survive_reopening(db):
    with sqlite3.connect(db) as con:
        con.executescript(V1_OUTBOX)
    clock = FakeClock()
    ob = Outbox(db, clock=clock, wall_ms=lambda: 1_800_000_000_000)
    with sqlite3.connect(db) as con:
        version = con.execute("SELECT version FROM schema_versions WHERE component='outbox'").fetchone()[0]
        assert version == SCHEMA_VERSION
        assert {"reason", "parked_ms"} <= {r[1] for r in con.execute("PRAGMA table_info(outbox)")}
    assert [r.row_id for r in ob.load(0, 10)] == [5] and [r.row_id for r in ob.load_waiting(0, 10)] == [6]
    ob.park(5, "broker PUBACK: Topic Name invalid")
    ob.commit()
    assert ob.load(0, 10) == [] and ob.stats.parked == 1 and ob.stats.rows == 2
    ob.close()
    ob = Outbox(db, clock=clock)  # reopened: still parked, never loaded for publishing
    assert ob.load(0, 10) == [] and ob.stats.parked == 1
    (row,) = ob.parked_rows()
    assert (row.row_id, row.node_id, row.fcnt, row.state) == (5, 42, 3, 2)
    assert row.reason == "broker PUBACK: Topic Name invalid" and row.parked_ms == 1_800_000_000_000
    with pytest.raises(OutboxError, match="no parked message with id 6"):
        ob.retry_parked([6])  # waiting for its model, not parked
    assert [r.row_id for r in ob.retry_parked(None)] == [5]
    assert ob.parked_rows()[0].state == 3 and ob.load(0, 10) == []  # until the service takes it back
    (taken,) = ob.take_requeued()
    assert taken.row_id == 5 and taken.frame.fcnt == 3 and [r.row_id for r in ob.load(0, 10)] == [5]
    assert ob.stats.parked == 0 and ob.parked_rows() == []
    ob.close()


def test_a_newer_outbox_schema_is_refused(db):
    Outbox(db).close()
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE schema_versions SET version = ? WHERE component = 'outbox'", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(OutboxError, match="newer than this gateway"):
        Outbox(db)
