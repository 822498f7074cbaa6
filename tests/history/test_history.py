"""Issue 18 item 1: the telemetry history, written in the outbox's group commit, bounded, exported."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.codec import ModelStore
from gateway.codec.csvio import read_csv
from gateway.sinks.history import HistoryReader, HistorySettings
from gateway.sinks.history_export import export
from tests.history.util import DATA, HOUR_MS, T0_MS, Site, install_demo, packet

A, B = 0x0A01, 0x0B02


@pytest.fixture
def site(tmp_path):
    model = install_demo(tmp_path)
    s = Site(tmp_path, [A, B])
    yield s, model
    s.close()


@pytest.fixture(scope="module")
def sandpoint():
    from gateway.codec import demo_model

    return read_csv(DATA / "sandpoint-1800.csv", demo_model().schema)[0]


def history_rows(db) -> int:
    with HistoryReader(db) as r:
        return int(r.stats()["rows"])


def test_rows_are_written_with_the_outbox_commit_and_decode_to_what_was_sent(site, sandpoint):
    s, model = site
    q = sandpoint[:160]
    s.now_ms = T0_MS + 15 * HOUR_MS  # a frame of 16 hourly samples is sent after its last one
    result = s.pipeline.process(packet(s.encoders[A].encode_model(model, q[:16]), s.now_ms))
    s.outbox.add(result[0])
    s.pipeline.accept(result[1])
    commits = s.outbox.stats.commits
    assert history_rows(s.db) == 0  # not before the outbox's commit ...
    s.outbox.commit()
    assert history_rows(s.db) == 1  # ... and in that same commit: no transaction of its own
    assert s.outbox.stats.commits == commits + 1
    s.stream(A, model, q[16:], T0_MS + 16 * HOUR_MS)
    s.stream(B, model, sandpoint[160:320], T0_MS)
    with HistoryReader(s.db) as r:
        exp = export(r, ModelStore(s.state), model.model_id)
        stats = r.stats()
    assert stats["rows"] == 20 and stats["nodes"] == 2
    assert stats["models"] == [{"model": "0@1", "rows": 20, "nodes": 2}]
    got = {x.node_id: x for x in exp.series}
    assert np.array_equal(got[A].q, q) and np.array_equal(got[B].q, sandpoint[160:320])
    # one sample per hour: every sample gets its own time, frame by frame
    assert np.array_equal(np.diff(got[A].times_ms), np.full(159, HOUR_MS))
    assert s.outbox.history.stats.stored == 20


def test_export_writes_a_csv_that_model_train_accepts_as_is(site, sandpoint, tmp_path, capsys):
    s, model = site
    s.stream(A, model, sandpoint[:480], T0_MS)
    s.stream(B, model, sandpoint[480:640], T0_MS)
    out = tmp_path / "history.csv"
    since = "2026-01-01T00:00Z"
    assert main(["--state-dir", str(s.state), "history", "export", "--model", "0", "--since", since,
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 640 and rows[0]["time"] == "2026-01-01T00:00:00.000Z"
    q, times = read_csv(out, model.schema)
    assert np.array_equal(q[:480], sandpoint[:480]) and len(times) == 640
    # one node only, and a time window
    state = ["--state-dir", str(s.state)]
    assert main([*state, "history", "export", "--node", f"0x{B:x}", "--out", str(out)]) == 0
    assert np.array_equal(read_csv(out, model.schema)[0], sandpoint[480:640])
    assert main([*state, "history", "export", "--until", "2026-01-02", "--out", str(out)]) == 0
    assert len(read_csv(out, model.schema)[0]) == 2 * 16  # one frame of each node arrived before the 2nd
    schema = tmp_path / "weather.toml"
    schema.write_text((DATA / "weather.toml").read_text())
    trained = tmp_path / "m.npz"
    capsys.readouterr()
    assert main(["model", "train", "--data", str(tmp_path / "history.csv"), "--schema", str(schema),
                 "--samples-per-frame", "16", "--out", str(trained)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["--state-dir", str(s.state), "history", "stats", "--json"]) == 0
    assert '"rows": 40' in capsys.readouterr().out


def test_export_refuses_bad_input_in_one_line(site, capsys, tmp_path):
    s, _model = site
    out = str(tmp_path / "x.csv")
    assert main(["--state-dir", str(s.state), "history", "export", "--out", out]) == 2
    assert capsys.readouterr().err.strip() == "lora-gw: history: no learned-model frames stored yet"
    assert main(["--state-dir", str(s.state), "history", "export", "--since", "yesterday", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--since 'yesterday' is not an ISO 8601" in err and err.count("\n") == 1


def test_retention_drops_the_oldest_days_counted(tmp_path, sandpoint):
    model = install_demo(tmp_path)
    s = Site(tmp_path, [A], HistorySettings(retention_days=2.0))
    try:
        # six days, one commit every 64 frames, delivered (rows still to publish are the outbox's)
        s.stream(A, model, sandpoint[:24 * 6], T0_MS, deliver=True)
        s.now_ms += 61_000  # the next check (once a minute of the outbox's clock)
        s.stream(A, model, sandpoint[24 * 6 : 24 * 6 + 16], s.now_ms + HOUR_MS, deliver=True)
        st = s.outbox.history.stats
        with HistoryReader(s.db) as r:
            first = r.stats()["first_ms"]
        assert st.dropped_age > 0 and st.rows == history_rows(s.db)
        assert first >= s.now_ms - 2 * 86400_000  # nothing older than the retention is left
        assert st.rows + st.dropped_age == st.stored
    finally:
        s.close()


def test_max_mb_keeps_the_newest_rows_within_the_cap(tmp_path, sandpoint):
    model = install_demo(tmp_path)
    cap = 0.002  # MB: about 2 KB of rows
    s = Site(tmp_path, [A], HistorySettings(max_mb=cap))
    try:
        s.stream(A, model, sandpoint[:1600], T0_MS, deliver=True)
        st = s.outbox.history.stats
        assert st.dropped_size > 0 and st.bytes <= cap * 1024 * 1024
        with HistoryReader(s.db) as r:
            stats = r.stats()
            exp = export(r, ModelStore(tmp_path), 0)
        assert stats["rows"] == st.rows and stats["size_bytes"] == st.bytes
        n = len(exp.series[0].q)
        assert np.array_equal(exp.series[0].q, sandpoint[1600 - n : 1600])  # the newest survive
    finally:
        s.close()


def test_history_off_keeps_no_rows_but_still_tracks_versions(tmp_path, sandpoint):
    model = install_demo(tmp_path)
    s = Site(tmp_path, [A], HistorySettings(enabled=False))
    try:
        s.stream(A, model, sandpoint[:64], T0_MS, deliver=True)
    finally:
        s.close()
    with HistoryReader(tmp_path / "gateway.db") as r:
        assert r.stats()["rows"] == 0  # delivered rows are deleted
        uses = r.node_models()
    assert [(u.node_id, u.model_id, u.model_version, u.frames) for u in uses] == [(A, 0, 1, 4)]


def test_a_commit_that_fails_for_space_keeps_history_and_its_counters_in_step(tmp_path, sandpoint):
    """SQLite refuses a group commit (disk full) after the history rows were added: the outbox drops
    the frames it was adding (counted), their history rows go with them, and the history's counters
    (rows, bytes, stored) do not count them."""
    import sqlite3

    model = install_demo(tmp_path)
    s = Site(tmp_path, [A])
    writer = s.outbox.history
    real_write, failures = writer.write, [2]

    def full_after_writing(db, frames):
        real_write(db, frames)
        if failures[0]:
            failures[0] -= 1
            err = sqlite3.OperationalError("database or disk is full")
            err.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise err

    writer.write = full_after_writing
    try:
        s.stream(A, model, sandpoint[:160], T0_MS)  # one commit: refused
        s.stream(A, model, sandpoint[160:320], T0_MS + 160 * HOUR_MS)  # refused too
        s.stream(A, model, sandpoint[320:480], T0_MS + 320 * HOUR_MS)  # stored
        assert s.outbox.stats.dropped_disk_full == 20 and s.outbox.stats.stored == 10
        st = writer.stats
        with HistoryReader(s.db) as r:
            stats = r.stats()
            exp = export(r, ModelStore(tmp_path), 0)
        assert stats["rows"] == st.rows == st.stored == 10 and stats["size_bytes"] == st.bytes
        assert np.array_equal(exp.series[0].q, sandpoint[320:480])
    finally:
        s.close()
