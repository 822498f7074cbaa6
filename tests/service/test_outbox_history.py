"""The outbox with [history] on: delivered model rows are kept as the history (no copy, no write per row)."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.frames.registry import Node, NodeRegistry
from gateway.sinks.history import KEPT, HistoryReader, HistorySettings
from gateway.sinks.outbox import Outbox, OutboxSettings, undelivered

from .frames_util import accepted

T0 = 1_800_000_000_000


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gateway.db"
    reg = NodeRegistry(path)
    reg.add(Node(node_id=42, name="weather"))
    reg.close()
    return path


def model_frame(fcnt: int, version: int = 9, utc_ms: int = T0):
    payload = bytes([fcnt & 0xFF, 7, 7])
    return accepted(42, fcnt, payload=payload, codec="model", model=(4, version), utc_ms=utc_ms)


def opened(db, **kw) -> Outbox:
    return Outbox(db, OutboxSettings(**kw), history=HistorySettings(), wall_ms=lambda: T0)


def table(db) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT id, state FROM outbox ORDER BY id").fetchall()


def upto(db) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT upto FROM outbox_kept").fetchone()[0]


def deliver(ob: Outbox, ids) -> None:
    for rid in ids:
        ob.acknowledge(rid)
    ob.commit()


def test_delivered_model_rows_stay_unwritten_as_history_and_are_never_published_again(db):
    ob = opened(db)
    ids = [ob.add(model_frame(i)) for i in range(5)] + [ob.add(accepted(42, 9))]  # the last one: LPP
    assert [s.row_id for s in ob.commit()] == ids
    deliver(ob, ids)
    assert (ob.stats.kept, ob.stats.deleted, ob.stats.rows, ob.count()) == (5, 1, 0, 0)
    assert table(db) == [(i, 0) for i in ids[:5]]  # not deleted, and not marked one by one either
    assert upto(db) == ids[4] and ob.load(0, 10) == []
    ob.close()
    ob = opened(db)  # a restart: nothing delivered is published again, new rows come after W
    assert ob.load(0, 10) == [] and ob.stats.rows == 0 and ob.count() == 0
    new = ob.add(model_frame(10))
    ob.commit()
    assert new == ids[4] + 1 and [s.row_id for s in ob.load(0, 10)] == [new]
    ob.close()
    with HistoryReader(db) as r:
        got = [(h.fcnt, h.model_id, h.model_version) for h in r.rows()]
    assert got == [(i, 4, 9) for i in (0, 1, 2, 3, 4, 10)]
    with sqlite3.connect(db) as con:
        assert undelivered(con) == (1, T0)  # what doctor and backup count: the one not delivered


def test_a_crash_before_the_acknowledgements_commit_publishes_them_again_once(db):
    ob = opened(db)
    ids = [ob.add(model_frame(i)) for i in range(3)]
    ob.commit()
    for rid in ids:
        ob.acknowledge(rid)  # PUBACKs handled, their commit not made yet: the process is killed here
    again = opened(db)
    assert [s.row_id for s in again.load(0, 10)] == ids  # at least once
    deliver(again, ids)
    again.close()
    assert [s.row_id for s in opened(db).load(0, 10)] == []  # and not after their commit
    ob._db.close()


def test_an_acknowledgement_out_of_order_is_marked_and_w_stops_at_the_row_still_to_publish(db):
    ob = opened(db)
    ids = [ob.add(model_frame(i)) for i in range(5)]
    ob.commit()
    deliver(ob, [ids[0], ids[1], ids[3]])
    assert upto(db) == ids[1] and dict(table(db))[ids[3]] == KEPT and dict(table(db))[ids[2]] == 0
    assert (ob.stats.kept, ob.stats.rows) == (3, 2)
    assert [s.row_id for s in ob.load(0, 10)] == [ids[2], ids[4]]
    ob.close()
    ob = opened(db)
    assert [s.row_id for s in ob.load(0, 10)] == [ids[2], ids[4]] and ob.stats.rows == 2
    deliver(ob, [ids[2], ids[4]])
    assert upto(db) == ids[4] and ob.stats.rows == 0 and ob.load(0, 10) == []  # past the marked row
    ob.close()


def test_history_off_deletes_delivered_rows_and_leaves_w_alone(db):
    ob = Outbox(db, history=HistorySettings(enabled=False))
    ids = [ob.add(model_frame(i)) for i in range(3)]
    ob.commit()
    deliver(ob, ids)
    assert table(db) == [] and upto(db) == 0 and ob.stats.deleted == 3 and ob.stats.kept == 0
    ob.close()


def test_max_rows_counts_only_rows_still_to_deliver_and_a_dropped_model_row_stays_history(db):
    ob = opened(db, max_rows=3)
    delivered = [ob.add(model_frame(i)) for i in range(3)]
    ob.commit()
    deliver(ob, delivered)
    lpp = ob.add(accepted(42, 9))
    waiting = [ob.add(model_frame(10 + i)) for i in range(2)]
    ob.commit()
    assert ob.stats.dropped_size == 0 and len(table(db)) == 6  # three kept rows do not count
    waiting.append(ob.add(model_frame(20)))
    waiting.append(ob.add(model_frame(21)))
    ob.commit()  # five to deliver, two over max_rows: the two oldest of them go
    assert ob.stats.dropped_size == 2 and ob.dropped_upto == waiting[0] and ob.stats.rows == 3
    states = dict(table(db))
    assert lpp not in states and states[waiting[0]] == KEPT  # an LPP row is deleted, a model row stays
    assert all(states[i] == 0 for i in delivered) and ob.count() == 3
    assert [s.row_id for s in ob.load(0, 10)] == waiting[1:]
    ob.close()


def test_expiry_drops_only_rows_still_to_deliver(db):
    now = [T0]
    ob = Outbox(db, OutboxSettings(max_age_s=60), history=HistorySettings(), wall_ms=lambda: now[0])
    old = T0 - 3_600_000
    delivered = ob.add(model_frame(1, utc_ms=old))
    ob.commit()
    deliver(ob, [delivered])
    lost_model, lost_lpp = ob.add(model_frame(2, utc_ms=old)), ob.add(accepted(42, 3, utc_ms=old))
    parked = ob.add(model_frame(4, utc_ms=old))
    fresh = ob.add(model_frame(5))
    ob.commit()
    ob.park(parked, "broker PUBACK: Topic Name invalid")
    ob.commit()
    assert ob.drop_expired() == 3 and ob.stats.dropped_age == 3 and ob.dropped_upto == parked
    states = dict(table(db))
    assert lost_lpp not in states and states[lost_model] == KEPT and states[parked] == KEPT
    assert states[delivered] == 0 and [s.row_id for s in ob.load(0, 10)] == [fresh]
    assert ob.stats.rows == 1 == ob.count() and ob.drop_expired() == 0
    ob.close()


def test_waiting_and_parked_rows_below_w_stay_undelivered_and_a_requeued_one_gets_a_new_id(db):
    ob = opened(db)
    parked, done, waiting, last = (ob.add(model_frame(i)) for i in range(4))
    ob.commit()
    ob.park(parked, "broker PUBACK: Topic Name invalid")
    ob.mark_waiting(waiting)
    deliver(ob, [done])
    deliver(ob, [last])  # W passes the parked and the waiting row, which stay undelivered
    assert upto(db) == last and ob.stats.rows == 2 and ob.count() == 2 and ob.stats.parked == 1
    assert [s.row_id for s in ob.load_waiting(0, 10)] == [waiting] and ob.load(0, 10) == []
    ob.retry_parked([parked])
    (taken,) = ob.take_requeued()
    assert taken.row_id == last + 1 and taken.frame.fcnt == 0  # state 0 below W would read as delivered
    assert [s.row_id for s in ob.load(0, 10)] == [last + 1] and parked not in dict(table(db))
    assert ob.add(model_frame(9)) == last + 2
    deliver(ob, [last + 1, waiting])
    assert ob.stats.rows == 1 and dict(table(db))[waiting] == KEPT and upto(db) == last + 1
    ob.close()


def test_a_failed_commit_without_new_frames_leaves_the_history_counters_alone(db):
    """A commit of acknowledgements alone that SQLite refuses (disk full) wrote nothing of the history:
    its counters stay those of the last good commit (not those before it)."""
    ob = opened(db)
    ob.add(model_frame(1))
    lpp = ob.add(accepted(42, 2))
    ob.commit()
    assert ob.history.stats.rows == 1
    real, calls = ob._deliver, []

    def full(conn):
        calls.append(1)
        err = sqlite3.OperationalError("database or disk is full")
        err.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise err

    ob._deliver = full
    ob.acknowledge(lpp)
    assert ob.commit() == [] and calls and ob.disk_full
    assert ob.history.stats.rows == 1 and ob.history.stats.stored == 1
    ob._deliver = real
    ob.commit()  # the acknowledgement was kept for the next try
    assert ob.stats.deleted == 1 and ob.history.stats.rows == 1
    ob.close()


def test_a_commit_refused_after_the_history_counted_its_rows_undoes_those_counts(db):
    """SQLite refuses the group commit (disk full) after the history counted the new model rows: the rows
    are dropped (counted as dropped_disk_full) and the history's counters are those of the database."""
    ob = opened(db)
    ob.add(model_frame(1))
    ob.commit()
    real, refusals = ob.history.write, [1]

    def full_after_writing(conn, frames):
        real(conn, frames)
        if refusals[0]:
            refusals[0] -= 1
            err = sqlite3.OperationalError("database or disk is full")
            err.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise err

    ob.history.write = full_after_writing
    ob.add(model_frame(2))
    ob.add(model_frame(3))
    assert ob.commit() == [] and ob.stats.dropped_disk_full == 2 and ob.disk_full
    assert (ob.history.stats.rows, ob.history.stats.stored) == (1, 1)  # not 3: their rows are not there
    ob.add(model_frame(4))
    assert len(ob.commit()) == 1 and not ob.disk_full
    assert (ob.history.stats.rows, ob.history.stats.stored) == (2, 2)
    ob.close()
    with HistoryReader(db) as r:
        assert [h.fcnt for h in r.rows()] == [1, 4] and r.stats()["rows"] == 2


def test_w_walks_past_more_waiting_rows_than_one_scan_batch_and_covers_the_acknowledged_behind(db):
    """W's scan reads the rows above it a batch at a time (acknowledged + 64): 65 rows waiting for their
    model and then two acknowledged rows — W ends past both, no row is marked one by one."""
    ob = opened(db)
    ids = [ob.add(model_frame(i)) for i in range(67)]
    ob.commit()
    for rid in ids[:65]:
        ob.mark_waiting(rid)
    ob.commit()
    deliver(ob, ids[65:])
    assert upto(db) == ids[66] and KEPT not in dict(table(db)).values()
    assert (ob.stats.kept, ob.stats.rows, ob.count()) == (2, 65, 65) and ob.load(0, 10) == []
    assert [s.row_id for s in ob.load_waiting(0, 100)] == ids[:65]
    ob.close()


def test_an_out_of_order_acknowledgement_before_a_backlog_longer_than_one_scan_batch(db):
    """The first row still to publish stops W even with more rows behind it than one scan batch; the
    acknowledged row beyond it is marked."""
    ob = opened(db)
    ids = [ob.add(model_frame(i)) for i in range(70)]
    ob.commit()
    deliver(ob, [ids[0], ids[2]])
    states = dict(table(db))
    assert upto(db) == ids[0] and states[ids[2]] == KEPT and states[ids[1]] == 0
    assert [s.row_id for s in ob.load(0, 100)] == [ids[1], *ids[3:]] and ob.stats.rows == 68
    ob.close()


def test_a_requeued_row_exactly_at_w_gets_a_new_id_and_is_published(db):
    ob = opened(db)
    done, parked = ob.add(model_frame(1)), ob.add(model_frame(2))
    ob.commit()
    ob.park(parked, "broker PUBACK: Topic Name invalid")
    ob.commit()
    deliver(ob, [done])  # W passes the parked row, the last one: W == its id
    assert upto(db) == parked
    ob.retry_parked([parked])
    (taken,) = ob.take_requeued()
    assert taken.row_id == parked + 1 and taken.frame.fcnt == 2
    assert [s.row_id for s in ob.load(0, 10)] == [parked + 1] and ob.stats.rows == 1
    ob.close()
    assert [s.row_id for s in opened(db).load(0, 10)] == [parked + 1]  # and after a restart


def test_several_requeued_rows_below_w_get_consecutive_new_ids_in_one_round(db):
    ob = opened(db)
    a, b, done = (ob.add(model_frame(i)) for i in range(3))
    ob.commit()
    ob.park(a, "p")
    ob.park(b, "p")
    ob.commit()
    deliver(ob, [done])
    assert upto(db) == done
    ob.retry_parked()
    taken = ob.take_requeued()
    assert [(s.row_id, s.frame.fcnt) for s in taken] == [(done + 1, 0), (done + 2, 1)]
    assert [s.row_id for s in ob.load(0, 10)] == [done + 1, done + 2] and ob.stats.parked == 0
    assert ob.add(model_frame(9)) == done + 3  # the next new row comes after them
    ob.close()
