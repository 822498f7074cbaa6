"""A full disk is a state of the outbox, not a crash: stored frames stay, new ones are counted as dropped."""

from __future__ import annotations

import logging
import sqlite3

from gateway.sinks.outbox import Outbox, OutboxSettings

from .frames_util import accepted
from .test_outbox import db, next_fcnt  # noqa: F401 - the fixture is used by name

MB = 1024 * 1024


class Disk:
    """Free space the outbox sees (its injected ``free_bytes``)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self) -> int:
        return self.free


def add(ob: Outbox, node: int, fcnts: range) -> None:
    for n in fcnts:
        ob.add(accepted(node, n))


def test_below_the_floor_new_frames_are_dropped_counted_and_deletes_still_commit(db, caplog):  # noqa: F811
    disk = Disk(100 * MB)
    ob = Outbox(db, OutboxSettings(commit_frames=1000, min_free_mb=10), free_bytes=disk)
    add(ob, 42, range(5))
    stored = ob.commit()
    assert [s.frame.fcnt for s in stored] == [0, 1, 2, 3, 4] and not ob.disk_full
    disk.free = 9 * MB  # below the 10 MB floor
    caplog.set_level(logging.WARNING)
    for batch in range(3):
        add(ob, 42, range(5 + 2 * batch, 7 + 2 * batch))
        assert ob.commit() == []
    assert ob.disk_full and ob.stats.dropped_disk_full == 6
    assert ob.stats.stored == 5 and ob.count() == 5 and next_fcnt(db, 42) == 5  # counters not advanced
    assert ob.backlog == 5
    warnings = [r.getMessage() for r in caplog.records if "cannot store new frames" in r.getMessage()]
    assert len(warnings) == 1 and "dropped_disk_full" in warnings[0]  # once per episode
    ob.acknowledge(stored[0].row_id)  # a PUBACK while full: the delete still goes through
    ob.commit()
    assert ob.count() == 4 and ob.stats.deleted == 1
    disk.free = 50 * MB
    ob.check_space()
    assert not ob.disk_full
    resumed = [r.getMessage() for r in caplog.records if "storing frames again" in r.getMessage()]
    assert len(resumed) == 1 and "6 frames were dropped" in resumed[0]
    add(ob, 42, range(11, 13))
    assert [s.frame.fcnt for s in ob.commit()] == [11, 12]
    assert next_fcnt(db, 42) == 13
    ob.close()


def test_a_capped_database_fills_drops_only_new_frames_and_recovers_once_the_backlog_is_delivered(db):  # noqa: F811
    ob = Outbox(db, OutboxSettings(commit_frames=20, max_db_mb=0.25, min_free_mb=0))
    stored = []
    fcnt = 0
    while not ob.disk_full:  # broker down: nothing is ever deleted
        add(ob, 7, range(fcnt, fcnt + 20))
        fcnt += 20
        stored += ob.commit()
        assert fcnt < 100_000
    kept = ob.count()
    assert kept == len(stored) == ob.stats.stored > 100
    assert ob.stats.dropped_disk_full == 20  # exactly the batch that met SQLITE_FULL
    assert [s.frame.fcnt for s in ob.load(0, 100_000)] == [s.frame.fcnt for s in stored]
    add(ob, 7, range(fcnt, fcnt + 20))
    fcnt += 20
    assert ob.commit() == [] and ob.stats.dropped_disk_full == 40
    for s in stored[:200]:  # the broker is back: delivered rows are deleted, which frees pages
        ob.acknowledge(s.row_id)
    ob.commit()
    assert ob.count() == kept - 200
    add(ob, 7, range(fcnt, fcnt + 20))
    again = ob.commit()
    assert len(again) == 20 and not ob.disk_full  # stored again, into the pages the deletes freed
    assert ob.stats.stored + ob.stats.dropped_disk_full == fcnt + 20
    ob.close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
