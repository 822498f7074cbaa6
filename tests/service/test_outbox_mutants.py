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


# -- second pass (issue 17): parked rows, space accounting, boundaries, errors, stored columns --------

NEED_ONE = 2 * (4 + 96)  # _room_for_pending's estimate for one frame of the default 4-byte payload


class Space:
    """An injected free-space reading (bytes)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self) -> int:
        return self.free


def _parked_outbox(db, n: int = 3, **kw) -> tuple[Outbox, list[int]]:
    ob = Outbox(db, OutboxSettings(commit_frames=1000), wall_ms=lambda: 1_700_000_123_456, **kw)
    ids = [ob.add(accepted(42, i)) for i in range(n)]
    ob.commit()
    for rid in ids:
        ob.park(rid, f"too big {rid}")
    ob.commit()
    return ob, ids


def test_fresh_outbox_ids_are_consecutive_and_stats_start_at_zero(tmp_path) -> None:
    ob = Outbox(tmp_path / "g.db")
    assert ob.stats.as_dict() == dict.fromkeys(ob.stats.as_dict(), 0)
    assert [ob.add(accepted(42, i)) for i in range(3)] == [1, 2, 3]
    assert len(ob.commit()) == 3 and ob.stats.stored == 3 and ob.stats.rows == 3
    ob.acknowledge(1)
    assert ob.backlog == 2  # the delete is queued, not yet committed
    ob.close()


def test_settings_defaults_match_the_documented_values() -> None:
    s = OutboxSettings()
    timing = (s.commit_frames, s.commit_interval_ms, s.delete_interval_ms, s.max_rows)
    assert timing == (256, 25, 1000, 500_000)
    assert (s.max_age_s, s.min_free_mb, s.max_db_mb) == (30 * 86400.0, 32.0, 0.0)
    with pytest.raises(AttributeError):
        s.max_rows = 1  # type: ignore[misc]
    assert not hasattr(s, "__dict__") and not hasattr(ob_stats(), "__dict__")


def ob_stats():
    from gateway.sinks.outbox import OutboxStats

    return OutboxStats()


def test_parked_rows_retry_requeue_and_drop(db) -> None:
    ob, ids = _parked_outbox(db)
    assert ob.stats.parked == 3 and ob.stats.rows == 3
    rows = ob.parked_rows()
    assert [r.row_id for r in rows] == ids
    d = rows[0].to_dict()
    assert (d["state"], d["reason"], d["parked_ms"], d["node_id_hex"]) == (
        "parked", f"too big {ids[0]}", 1_700_000_123_456, "0x0000002a"
    )
    assert rows[0].received_ms == RADIO.utc_ms
    with pytest.raises(AttributeError):
        rows[0].reason = "x"  # type: ignore[misc]
    assert not hasattr(rows[0], "__dict__")
    assert [r.row_id for r in ob.retry_parked([ids[0]])] == [ids[0]]
    assert ob.parked_rows([ids[0]])[0].to_dict()["state"] == "requeued"
    with pytest.raises(Exception, match="no parked message with id 999"):
        ob.drop_parked([999])
    dropped = ob.drop_parked([ids[1]])
    assert [r.row_id for r in dropped] == [ids[1]]
    assert ob.stats.rows == 2 and ob.stats.parked == 2 and ob.count() == 2
    taken = ob.take_requeued()
    assert [s.row_id for s in taken] == [ids[0]]
    assert ob.stats.parked == 1 and ob.stats.rows == 2
    assert [s.row_id for s in ob.load(0, 10)] == [ids[0]]
    ob.close()


def test_take_requeued_recounts_rows_dropped_by_another_process(db) -> None:
    ob, ids = _parked_outbox(db)
    other = Outbox(db)
    other.drop_parked([ids[2]])  # `lora-gw outbox drop` beside the service
    other.retry_parked([ids[0]])
    other.close()
    assert ob.stats.rows == 3
    assert [s.row_id for s in ob.take_requeued()] == [ids[0]]
    assert ob.stats.rows == 2 and ob.stats.parked == 1
    ob.close()


def test_take_requeued_takes_a_thousand_by_default(db) -> None:
    ob, _ = _parked_outbox(db, n=1001)
    ob.retry_parked()
    assert len(ob.take_requeued()) == 1000
    assert len(ob.take_requeued()) == 1
    ob.close()


def test_park_alone_is_flushed_on_the_delete_timer(db) -> None:
    clock = Clock(0.0)
    ob = Outbox(db, OutboxSettings(commit_frames=1000, delete_interval_ms=1000), clock=clock)
    rid = ob.add(accepted(42, 1))
    clock.t = 0.025  # exactly commit_interval_ms
    assert [s.row_id for s in ob.maybe_commit()] == [rid]
    ob.park(rid, "poison")
    assert ob.seconds_to_commit() == pytest.approx(1.0)
    clock.t = 1.0245
    assert ob.maybe_commit() == [] and ob.stats.parked == 0
    clock.t = 1.0255
    ob.maybe_commit()
    assert ob.stats.parked == 1
    rid2 = ob.add(accepted(42, 2))
    ob.mark_waiting(rid2)
    assert ob.seconds_to_commit() == pytest.approx(0.025)
    ob.close()


def test_delete_and_commit_intervals_are_not_shortened(db) -> None:
    clock = Clock(0.0)
    ob = Outbox(db, OutboxSettings(commit_frames=1000, delete_interval_ms=1000), clock=clock)
    ob.add(accepted(42, 1))
    clock.t = 0.02499
    assert ob.maybe_commit() == []
    clock.t = 0.025
    (a,) = ob.maybe_commit()
    ob.mark_waiting(a.row_id)
    clock.t = 0.025 + 0.9995
    ob.maybe_commit()
    assert ob.load_waiting(0, 10) == []  # 999.5 ms < 1000 ms: not yet
    clock.t = 1.03
    ob.maybe_commit()
    assert [s.row_id for s in ob.load_waiting(0, 10)] == [a.row_id]
    ob.close()


def test_mixed_state_changes_count_towards_the_flush_threshold(db) -> None:
    ob = Outbox(db, OutboxSettings(commit_frames=1, delete_interval_ms=60_000), clock=Clock())
    rows = []
    for i in range(4):
        ob.add(accepted(42, i))
        rows += ob.maybe_commit()
    ob.acknowledge(rows[0].row_id)
    ob.mark_waiting(rows[1].row_id)
    ob.mark_waiting(rows[2].row_id)
    assert ob.maybe_commit() == [] and ob.count() == 4
    ob.park(rows[3].row_id, "p")  # 1 + 2 + 1 = 4 × commit_frames
    ob.maybe_commit()
    assert ob.count() == 3 and ob.stats.parked == 1 and len(ob.load_waiting(0, 10)) == 2
    ob.close()


def test_commit_without_deletes_leaves_every_state_change_queued(db) -> None:
    ob = Outbox(db, OutboxSettings(commit_frames=1000))
    ids = [ob.add(accepted(42, i)) for i in range(3)]
    ob.commit()
    ob.acknowledge(ids[0])
    ob.mark_waiting(ids[1])
    ob.park(ids[2], "p")
    ob.add(accepted(42, 9))
    assert len(ob.commit(include_deletes=False)) == 1
    assert ob.count() == 4 and ob.load_waiting(0, 10) == [] and ob.stats.parked == 0
    assert ob.commit(include_deletes=False) == []
    ob.commit()
    assert ob.count() == 3 and ob.stats.parked == 1 and ob.stats.deleted == 1
    ob.close()


def test_exactly_max_rows_drops_nothing_and_logs_nothing(db, caplog) -> None:
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=3))
    for i in range(3):
        ob.add(accepted(42, i))
    with caplog.at_level("WARNING", logger="gateway.sinks.outbox"):
        ob.commit()
    assert "dropped" not in caplog.text and ob.dropped_upto == 0
    ob.close()


def test_unknown_radio_names_and_a_missing_model_version_are_stored_as_defaults(db) -> None:
    ob = Outbox(db)
    base = accepted(42, 1, codec="model", model=(3, 1))
    ob.add(replace(base, model_version=None, radio=replace(RADIO, cr="4/9", crc="weird")))
    ob.commit()
    _crash(ob)
    ob = Outbox(db)
    (s,) = ob.load(0, 10)
    f = s.frame
    assert (f.model_id, f.model_version, f.radio.cr, f.radio.crc) == (3, 0, "4/5", "ok")
    ob.close()


def test_files_written_by_earlier_versions_keep_their_coding_rate_and_crc_codes(db) -> None:
    """The cr column holds the denominator (5..8), crc 0 ok / 1 absent / 2 failed: existing files."""
    ob = Outbox(db)
    rid = ob.add(accepted(42, 1))
    ob.commit()
    ob.close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE outbox SET cr = 8, crc = 2 WHERE id = ?", (rid,))
        assert c.execute("SELECT cr, crc FROM outbox").fetchone() == (8, 2)
    ob = Outbox(db)
    (s,) = ob.load(0, 10)
    assert (s.frame.radio.cr, s.frame.radio.crc) == ("4/8", "failed")
    ob.add(replace(accepted(42, 2), radio=replace(RADIO, cr="4/8", crc="failed")))
    ob.commit()
    ob.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT cr, crc FROM outbox WHERE id = ?", (rid + 1,)).fetchone() == (8, 2)


def test_parked_at_uses_the_wall_clock_in_ms_by_default(db) -> None:
    import time

    ob = Outbox(db)
    rid = ob.add(accepted(42, 1))
    ob.commit()
    ob.park(rid, "p")
    ob.commit()
    (row,) = ob.parked_rows()
    assert abs(row.parked_ms - time.time() * 1000) < 60_000
    assert ob._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    ob.close()


def test_a_one_page_file_is_converted_to_small_pages(tmp_path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA page_size = 4096")
        c.execute("PRAGMA user_version = 1")
        assert c.execute("PRAGMA page_count").fetchone()[0] == 1
    ob = Outbox(path)
    assert ob._db.execute("PRAGMA page_size").fetchone()[0] == 1024
    ob.close()


def test_a_new_file_is_created_with_small_pages_without_a_conversion(tmp_path, caplog) -> None:
    with caplog.at_level("INFO", logger="gateway.sinks.outbox"):
        ob = Outbox(tmp_path / "g.db")
    assert "converted" not in caplog.text and "migrated" not in caplog.text
    ob.close()
    with caplog.at_level("INFO", logger="gateway.sinks.outbox"):
        Outbox(tmp_path / "g.db").close()
    assert "migrated" not in caplog.text


def test_closing_twice_is_quiet(db, caplog) -> None:
    ob = Outbox(db)
    ob.close()
    with caplog.at_level("WARNING", logger="gateway.sinks.outbox"):
        ob.close()
    assert caplog.text == ""


def test_sqlite_errors_other_than_a_full_disk_are_outbox_errors(db) -> None:
    from gateway.sinks.outbox import OutboxError

    ob = Outbox(db)
    ob.add(accepted(42, 1))
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE outbox")
    with pytest.raises(OutboxError, match="commit failed"):
        ob.commit()
    with pytest.raises(OutboxError, match="expired"):
        ob.drop_expired()
    with pytest.raises(OutboxError, match="requeue"):
        ob.take_requeued()
    ob._db.close()


def test_expiry_boundary_counts_and_marks_the_dropped_rows(db, caplog) -> None:
    now = 1_700_000_000_000
    ob = Outbox(db, OutboxSettings(max_age_s=100.0), wall_ms=lambda: now)
    old = ob.add(accepted(42, 1, utc_ms=now - 100_001))
    ob.add(accepted(42, 2, utc_ms=now - 100_000))  # exactly max_age_s: kept
    ob.commit()
    with caplog.at_level("WARNING", logger="gateway.sinks.outbox"):
        assert ob.drop_expired() == 1
        assert ob.drop_expired() == 0
    assert caplog.text.count("older than") == 1
    assert ob.dropped_upto == old and ob.stats.rows == 1 and ob.stats.dropped_age == 1
    ob.close()


def test_room_counts_free_space_above_the_floor_and_free_pages(db) -> None:
    space = Space(50 * 1048576)
    ob = Outbox(db, OutboxSettings(min_free_mb=1.0), free_bytes=space)
    assert ob.room_bytes() == 49 * 1048576
    for i in range(200):
        ob.add(accepted(42, i, payload=bytes(500)))
    ob.commit()
    for i in range(1, 201):
        ob.acknowledge(i)
    ob.commit()
    free_pages = ob._db.execute("PRAGMA freelist_count").fetchone()[0]
    assert free_pages > 0
    assert ob.room_bytes() == 49 * 1048576 + free_pages * 1024
    space.free = 0
    assert ob.room_bytes() == free_pages * 1024  # below the floor: only the file's own free pages
    assert ob.free_mb() == 0.0
    space.free = 10 * 1048576 + 110_000
    assert ob.free_mb() == 10.1
    ob.close()


def test_the_database_cap_bounds_the_room(db) -> None:
    ob = Outbox(db, OutboxSettings(min_free_mb=0.0, max_db_mb=2.0), free_bytes=Space(10**12))
    assert ob._db.execute("PRAGMA max_page_count").fetchone()[0] == 2048
    used = ob._db.execute("PRAGMA page_count").fetchone()[0]
    free_pages = ob._db.execute("PRAGMA freelist_count").fetchone()[0]
    assert ob.room_bytes() == (2048 - used) * 1024 + free_pages * 1024
    ob.close()


def test_a_frame_needing_exactly_the_room_left_is_stored(db) -> None:
    floor = 1048576
    space = Space(floor + NEED_ONE)
    ob = Outbox(db, OutboxSettings(min_free_mb=1.0), free_bytes=space)
    ob.add(accepted(42, 1))
    assert len(ob.commit()) == 1 and not ob.disk_full
    space.free = floor + NEED_ONE - 1
    ob.add(accepted(42, 2))
    assert ob.commit() == [] and ob.disk_full and ob.stats.dropped_disk_full == 1
    ob.add(accepted(42, 3))
    ob.add(accepted(42, 4))
    assert ob.commit() == [] and ob.stats.dropped_disk_full == 3
    assert ob.count() == 1
    ob.close()


def test_without_a_floor_or_cap_the_free_space_is_not_consulted(db) -> None:
    ob = Outbox(db, OutboxSettings(min_free_mb=0.0), free_bytes=Space(0))
    ob.add(accepted(42, 1))
    assert len(ob.commit()) == 1 and not ob.disk_full
    ob.close()


def test_a_disk_full_episode_ends_at_exactly_enough_room_and_logs_its_count(db, caplog) -> None:
    floor = 1048576
    space = Space(0)
    ob = Outbox(db, OutboxSettings(min_free_mb=1.0), free_bytes=space)
    ob.add(accepted(42, 1))
    ob.add(accepted(42, 2))
    assert ob.commit() == [] and ob.disk_full
    ob.acknowledge(99)  # a deletes-only commit does not end the episode
    ob.commit()
    assert ob.disk_full
    space.free = floor + 2 * (96 + 64) - 1
    ob.check_space()
    assert ob.disk_full
    space.free = floor + 2 * (96 + 64)
    ob.add(accepted(42, 3))
    ob.check_space()
    assert ob.disk_full  # a frame is pending: its commit decides
    ob._pending, ob._pending_frames = [], []
    with caplog.at_level("WARNING", logger="gateway.sinks.outbox"):
        ob.check_space()
    assert ob.disk_full is False  # a JSON false in the stats topic ("disk_full"), not null
    assert "); 2 frames were dropped while the disk was full" in caplog.text  # not -2
    space.free = 0
    ob.add(accepted(42, 4))
    ob.commit()
    space.free = 10 * floor
    caplog.clear()
    ob.add(accepted(42, 5))
    with caplog.at_level("WARNING", logger="gateway.sinks.outbox"):
        assert len(ob.commit()) == 1
    assert ob.disk_full is False and "); 1 frames were dropped" in caplog.text
    ob.close()


def test_stats_defaults_and_a_fresh_outbox_state(db) -> None:
    from gateway.sinks.outbox import OutboxStats

    assert OutboxStats().as_dict() == dict.fromkeys(OutboxStats().as_dict(), 0)
    ob = Outbox(db, wall_ms=lambda: 1_700_000_000_000)
    assert ob.disk_full is False and ob.dropped_upto == 0
    assert ob.drop_expired() == 0 and ob.dropped_upto == 0  # nothing expired: nothing marked
    ob.close()


def test_free_mb_rounds_to_one_decimal_of_a_mebibyte(db) -> None:
    space = Space(10_538_189)  # 10.0500002 MiB
    ob = Outbox(db, free_bytes=space)
    assert ob.free_mb() == 10.1
    space.free = 10_632_561  # 10.14 MiB
    assert ob.free_mb() == 10.1
    ob.close()


def test_a_held_row_without_reason_or_time_reads_as_empty_and_zero(db) -> None:
    ob = Outbox(db)
    rid = ob.add(accepted(42, 1))
    ob.commit()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE outbox SET state = 2, reason = NULL, parked_ms = NULL WHERE id = ?", (rid,))
    (row,) = ob.parked_rows()
    assert (row.reason, row.parked_ms) == ("", 0)
    ob.close()


# -- third pass (issue 17, history kept in the outbox): schema version, kept rows, W, bounds ------------


def test_the_outbox_schema_written_is_v3_and_a_v4_file_is_refused(db) -> None:
    """The number other tools read (doctor, backup, an older gateway's refusal): literally 3 today."""
    from gateway.sinks.outbox import OutboxError

    Outbox(db).close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT version FROM schema_versions WHERE component = 'outbox'").fetchone() == (3,)
        c.execute("UPDATE schema_versions SET version = 4 WHERE component = 'outbox'")
    with pytest.raises(OutboxError, match="schema v4, newer than this gateway"):
        Outbox(db)


def test_a_v2_file_is_migrated_to_v3_only_and_says_so(db, caplog) -> None:
    """A v2 file (parked columns, no outbox_kept) gets the v3 parts; its log names v3, not v2 again."""
    ob = Outbox(db)
    rid = ob.add(accepted(42, 1))
    ob.commit()
    ob.close()
    with sqlite3.connect(db) as c:  # back to what a v2 gateway left
        c.execute("DROP TABLE outbox_kept")
        c.execute("DROP INDEX outbox_waiting")
        c.execute("UPDATE schema_versions SET version = 2 WHERE component = 'outbox'")
    with caplog.at_level("INFO", logger="gateway.sinks.outbox"):
        ob = Outbox(db)
    assert "migrated to schema v3" in caplog.text and "schema v2" not in caplog.text
    assert [s.row_id for s in ob.load(0, 10)] == [rid] and ob.kept_upto == 0
    ob.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT upto FROM outbox_kept").fetchall() == [(0,)]
        assert c.execute("SELECT version FROM schema_versions WHERE component = 'outbox'").fetchone() == (3,)


def _capped_one_page_over(db) -> Outbox:
    """An outbox whose max_db_mb leaves exactly one page beyond the file's size (and the disk is huge)."""
    Outbox(db).close()
    with sqlite3.connect(db) as c:
        used = c.execute("PRAGMA page_count").fetchone()[0]
    cap_mb = (used + 1) * 1024 / 1048576
    ob = Outbox(db, OutboxSettings(min_free_mb=0.0, max_db_mb=cap_mb), free_bytes=Space(10**12))
    assert ob.room_bytes() == 1024 and ob._db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    return ob


def test_under_a_cap_the_room_is_the_caps_even_with_a_large_free_disk(db) -> None:
    """Twice a row's size must fit under max_db_mb (the reserve that keeps deletes writable), whatever
    the disk has free: 2 × (417 + 96) = 1026 bytes > the one page left is refused, though SQLite would
    still take that row today; 2 × (416 + 96) = 1024 bytes, exactly the room, is stored."""
    ob = _capped_one_page_over(db)
    ob.add(accepted(42, 1, payload=bytes(417)))
    assert ob.commit() == [] and ob.disk_full and ob.stats.dropped_disk_full == 1
    ob.add(accepted(42, 2, payload=bytes(416)))
    (stored,) = ob.commit()
    assert stored.frame.fcnt == 2 and ob.disk_full is False and ob.stats.dropped_disk_full == 1
    ob.close()
    assert _rows(db) == [stored.row_id]


def test_a_park_that_finds_its_row_already_parked_or_gone_counts_nothing(db) -> None:
    ob = Outbox(db, OutboxSettings(commit_frames=1000))
    kept, gone = ob.add(accepted(42, 1)), ob.add(accepted(42, 2))
    ob.commit()
    ob.park(kept, "too big")
    ob.commit()
    ob.acknowledge(gone)
    ob.commit()
    ob.park(kept, "too big")  # already parked: not parked a second time
    ob.park(gone, "too big")  # no longer in the table (delivered): nothing to park
    ob.commit()
    assert ob.stats.parked == 1 == len(ob.parked_rows()) and ob.stats.rows == 1 == ob.count()
    ob.close()


def _full(*_args):
    err = sqlite3.OperationalError("database or disk is full")
    err.sqlite_errorcode = sqlite3.SQLITE_FULL
    raise err


def test_bounds_that_meet_a_full_disk_drop_nothing_and_are_applied_at_the_next_round(db) -> None:
    """max_rows and expiry write too (deletes): on a full disk they roll back, count nothing, raise
    nothing (the commit's frames are still returned for publishing), and apply at their next round."""
    now = 1_700_000_000_000
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=2, max_age_s=60.0), wall_ms=lambda: now)
    real = ob._retire
    ob._retire = _full
    ids = [ob.add(accepted(42, i, utc_ms=now - 3_600_000)) for i in range(3)]
    assert [s.row_id for s in ob.commit()] == ids
    assert ob.stats.dropped_size == 0 and ob.stats.rows == 3 == ob.count() and ob.dropped_upto == 0
    assert ob.drop_expired() == 0 and ob.stats.dropped_age == 0 and ob.count() == 3
    ob._retire = real
    ob.add(accepted(42, 3))
    ob.commit()  # the next commit: max_rows applies again
    assert ob.stats.dropped_size == 2 and ob.dropped_upto == ids[1] and ob.count() == 2
    assert ob.drop_expired() == 1 and ob.stats.dropped_age == 1 and ob.count() == 1 == ob.stats.rows
    ob.close()


def test_a_puback_for_a_row_max_rows_dropped_deletes_and_counts_nothing(db) -> None:
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=1))
    first, second = ob.add(accepted(42, 1)), ob.add(accepted(42, 2))
    ob.commit()  # two rows, max_rows 1: the oldest is dropped while its publish is in flight
    assert ob.stats.dropped_size == 1 and _rows(db) == [second]
    ob.acknowledge(first)  # its PUBACK arrives afterwards
    ob.commit()
    assert ob.stats.deleted == 0 and ob.stats.rows == 1 == ob.count() and ob.backlog == 1
    ob.acknowledge(second)
    ob.commit()
    assert ob.stats.deleted == 1 and ob.stats.rows == 0 == ob.count()
    ob.close()


def test_a_max_rows_round_that_finds_nothing_left_to_deliver_drops_and_marks_nothing(db) -> None:
    """The row count can be stale (another process dropped parked rows; the next requeue round counts
    again): a max_rows round that then finds no row still to deliver drops nothing and marks no id."""
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=1))
    real, ob._retire = ob._retire, _full  # max_rows cannot apply for now (a full disk)
    x, p1, p2 = (ob.add(accepted(42, i)) for i in range(3))
    ob.commit()
    ob.park(p1, "p")
    ob.park(p2, "p")
    ob.commit()
    other = Outbox(db)
    other.drop_parked()  # `lora-gw outbox drop` beside the service
    other.close()
    ob._retire = real
    ob.acknowledge(x)
    ob.commit()  # the stale count is over max_rows, the table has nothing left to deliver
    assert ob.stats.dropped_size == 0 and ob.dropped_upto == 0 and ob.count() == 0
    assert ob.take_requeued() == [] and ob.stats.rows == 0 and ob.stats.parked == 0
    ob.close()


def test_at_max_rows_a_drop_by_another_process_is_counted_before_frames_are_dropped(db) -> None:
    """`lora-gw outbox drop` beside a full outbox: the next commit recounts (the database's
    data_version moved) instead of dropping a real frame for a row that is already gone."""
    ob = Outbox(db, OutboxSettings(commit_frames=1000, max_rows=3), wall_ms=lambda: 1_700_000_123_456)
    ids = [ob.add(accepted(42, i)) for i in range(3)]
    ob.commit()
    for rid in ids:
        ob.park(rid, f"too big {rid}")
    ob.commit()
    assert ob.stats.rows == 3
    other = Outbox(db)
    other.drop_parked([ids[0]])
    other.close()
    ob.add(accepted(42, 10))
    ob.commit()
    assert ob.stats.dropped_size == 0 and ob.stats.rows == ob.count() == 3
    ob.add(accepted(42, 11))  # now really over the cap: the oldest still to deliver goes
    ob.commit()
    assert ob.stats.dropped_size == 1 and ob.stats.rows == ob.count() == 3
    ob.close()
