"""Outbox behaviours that the mutation run (bench/mutation.py) found untested: a PUBACKed row's delete on
its own timer, row ids and row count kept equal to the database, counters saved when the registry's
table appears later, and every format, codec and radio field surviving a restart."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from gateway.frames.registry import Node, NodeRegistry
from gateway.sinks.outbox import Outbox, OutboxSettings

from .frames_util import RADIO, accepted


class Clock:
    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gateway.db"
    reg = NodeRegistry(path)
    reg.add(Node(node_id=42, name="weather"))
    reg.close()
    return path


def _crash(ob: Outbox) -> None:
    """The process dies: whatever is only in memory is gone (no close(), no final commit)."""
    ob._db.close()


def _rows(path) -> list[int]:
    with sqlite3.connect(path) as c:
        return [r[0] for r in c.execute("SELECT id FROM outbox ORDER BY id")]


def test_acknowledged_row_is_deleted_after_the_interval_without_another_frame(db):
    clock = Clock()
    ob = Outbox(db, OutboxSettings(commit_frames=1, delete_interval_ms=1000), clock=clock)
    ob.add(accepted(42, 1))
    (a,) = ob.maybe_commit()
    ob.acknowledge(a.row_id)
    assert ob.seconds_to_commit() == pytest.approx(1.0)
    clock.t += 0.999
    assert ob.maybe_commit() == [] and _rows(db) == [a.row_id]
    clock.t += 0.002  # a quiet period: no frame comes to carry the delete
    assert ob.maybe_commit() == []
    assert _rows(db) == [] and ob.stats.deleted == 1 and ob.backlog == 0
    assert ob.seconds_to_commit() is None
    _crash(ob)
    again = Outbox(db, clock=clock)
    assert again.load(0, 10) == []  # not published a second time after the restart
    again.close()


def test_deletes_flush_alone_when_many_are_waiting(db):
    clock = Clock()
    ob = Outbox(db, OutboxSettings(commit_frames=2, delete_interval_ms=60_000), clock=clock)
    rows = []
    for n in range(8):
        ob.add(accepted(42, n))
        rows += ob.maybe_commit()
    assert len(rows) == 8
    for s in rows[:7]:
        ob.acknowledge(s.row_id)
    assert ob.maybe_commit() == [] and len(_rows(db)) == 8  # 7 < 4 × commit_frames
    ob.acknowledge(rows[7].row_id)
    ob.maybe_commit()  # 8 = 4 × commit_frames: flushed without waiting a minute
    assert _rows(db) == []
    ob.close()


def test_row_ids_and_count_follow_the_database_across_restarts(db):
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=5))
    ids = [ob.add(accepted(42, n)) for n in range(3)]
    stored = ob.commit()
    assert [s.row_id for s in stored] == ids == _rows(db)
    ob.acknowledge(ids[0])
    ob.commit()
    assert ob.stats.rows == ob.count() == 2 and ob.backlog == 2
    ob.close()
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=5))
    assert ob.stats.rows == 2
    new = [ob.add(accepted(42, n)) for n in range(3, 6)]
    assert new[0] == ids[-1] + 1  # after the highest stored id, never a reused one
    ob.commit()
    assert _rows(db) == ids[1:] + new
    assert ob.stats.rows == ob.count() == 5 and ob.stats.dropped_size == 0  # at max_rows, not above it
    ob.add(accepted(42, 6))
    ob.commit()
    assert ob.stats.dropped_size == 1 and ob.count() == 5 and ob.stats.rows == 5
    assert ob.load(0, 1)[0].frame.fcnt == 2 and ob.dropped_upto == ids[1]
    ob.close()


def test_counters_saved_when_the_nodes_table_appears_after_the_outbox_opened(tmp_path):
    path = tmp_path / "gateway.db"
    ob = Outbox(path)
    reg = NodeRegistry(path)  # the operator's first `nodes add` after the service started
    reg.add(Node(node_id=9, name="late"))
    ob.add(accepted(9, 41))
    ob.commit()
    assert reg.get(9).next_fcnt == 42
    assert ob.stats.counters_unmatched == 0
    ob.add(accepted(10, 1))  # a node the registry does not have: counted, not an error
    ob.commit()
    assert ob.stats.counters_unmatched == 1
    reg.close()
    ob.close()


def test_counter_update_without_a_nodes_table_is_not_an_error(tmp_path):
    ob = Outbox(tmp_path / "gateway.db")
    ob.add(accepted(9, 1))
    assert len(ob.commit()) == 1 and ob.stats.counters_unmatched == 0
    ob.close()


def test_every_format_codec_and_radio_field_round_trips_through_a_restart(db):
    radios = [
        replace(RADIO, cr=cr, crc=crc, sf=sf, bw_hz=bw, rssi_dbm=-120.5, snr_db=-7.25, freq_error_hz=1500.0)
        for cr, crc, sf, bw in (("4/5", "ok", 7, 125_000), ("4/6", "absent", 9, 250_000),
                                ("4/7", "failed", 12, 62_500), ("4/8", "ok", 6, 500_000))
    ]  # fmt: skip
    combos = [("frame", "lpp"), ("frame", "raw"), ("frame", "model"), ("lpp", "lpp"), ("raw", "raw"),
              ("radiohead", "radiohead"), ("radiohead", "lpp"), ("radiohead", "raw")]  # fmt: skip
    frames = []
    for i, (fmt, codec) in enumerate(combos):
        model = (15, 7) if codec == "model" else None
        base = accepted(42, 100 + i, payload=bytes([i, 255 - i]), codec=codec, model=model)
        frames.append(replace(base, format=fmt, radio=radios[i % len(radios)]))
    ob = Outbox(db)
    for f in frames:
        ob.add(f)
    ob.commit()
    _crash(ob)
    ob = Outbox(db)
    loaded = [s.frame for s in ob.load(0, 100)]
    assert loaded == frames
    assert [(f.format, f.codec, f.radio.cr, f.radio.crc) for f in loaded] == [
        (f.format, f.codec, f.radio.cr, f.radio.crc) for f in frames
    ]
    ob.close()
