"""A state database made by the previous gateway (outbox v2, a history table of its own) is migrated."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from gateway.frames.registry import Node, NodeRegistry
from gateway.sinks.history import KEPT, HistoryReader, HistorySettings
from gateway.sinks.outbox import SCHEMA_VERSION, Outbox

# What the previous gateway created, statement for statement (outbox schema v2, history schema v1).
PREVIOUS = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL, fcnt INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, kind INTEGER NOT NULL, model INTEGER,
    payload BLOB NOT NULL, rssi_dbm10 INTEGER NOT NULL, snr_db4 INTEGER NOT NULL, freq_hz INTEGER NOT NULL,
    freq_error_hz INTEGER NOT NULL, sf INTEGER NOT NULL, bw_hz INTEGER NOT NULL, cr INTEGER NOT NULL,
    crc INTEGER NOT NULL, reason TEXT, parked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE INDEX outbox_held ON outbox (state, id) WHERE state >= 2;
CREATE TABLE history (
    id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL, fcnt INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    model_id INTEGER NOT NULL, model_version INTEGER NOT NULL, payload BLOB NOT NULL
);
CREATE TABLE node_models (
    node_id INTEGER NOT NULL, model_id INTEGER NOT NULL, model_version INTEGER NOT NULL,
    first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, frames INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, model_id, model_version)
) WITHOUT ROWID;
INSERT OR REPLACE INTO schema_versions VALUES ('outbox', 2), ('history', 1);
-- three delivered frames (only in the history), one still to publish (in both; the outbox has version mod 8)
INSERT INTO history VALUES (1, 42, 10, 1000, 4, 9, x'0a'), (2, 42, 11, 2000, 4, 9, x'0b'),
                           (3, 42, 12, 3000, 4, 9, x'0c'), (4, 42, 13, 4000, 4, 9, x'0d');
INSERT INTO outbox (id, node_id, fcnt, created_ms, kind, model, payload, rssi_dbm10, snr_db4, freq_hz,
                    freq_error_hz, sf, bw_hz, cr, crc)
    VALUES (7, 42, 13, 4000, 2, 33, x'0d', -900, 30, 868100000, 0, 7, 125000, 5, 0);
INSERT INTO node_models VALUES (42, 4, 9, 1000, 4000, 4);
"""


def test_a_previous_database_keeps_its_history_and_its_backlog(tmp_path):
    db = tmp_path / "gateway.db"
    registry = NodeRegistry(db)
    registry.add(Node(node_id=42, name="weather"))
    registry.close()
    with sqlite3.connect(db) as con:
        con.executescript(PREVIOUS)
    with HistoryReader(db) as r:  # before any service opened it: the old table is read as it is
        assert [h.fcnt for h in r.rows()] == [10, 11, 12, 13]
    ob = Outbox(db, history=HistorySettings(), wall_ms=lambda: 5000)
    assert ob.history.stats.rows == 4 and ob.stats.rows == 1
    (pending,) = ob.load(0, 10)
    assert (pending.row_id, pending.frame.fcnt, pending.frame.model_version) == (7, 13, 9)  # full version
    ob.close()
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = dict(con.execute("SELECT component, version FROM schema_versions"))
        rows = con.execute("SELECT id, fcnt, state FROM outbox ORDER BY id").fetchall()
    assert "history" not in tables and versions["outbox"] == SCHEMA_VERSION and versions["history"] == 2
    assert rows == [(-3, 10, KEPT), (-2, 11, KEPT), (-1, 12, KEPT), (7, 13, 0)]  # oldest first, below
    with HistoryReader(db) as r:
        assert [(h.fcnt, h.received_ms, h.model_version, h.payload) for h in r.rows()] == [
            (10, 1000, 9, b"\x0a"),
            (11, 2000, 9, b"\x0b"),
            (12, 3000, 9, b"\x0c"),
            (13, 4000, 9, b"\x0d"),
        ]
        assert r.stats()["rows"] == 4 and [u.frames for u in r.node_models()] == [4]
    ob = Outbox(db, history=HistorySettings(max_mb=150 / 1024 / 1024), wall_ms=lambda: 5000)
    ob.add(replace(pending.frame, fcnt=14, next_fcnt=15))
    ob.commit()  # over a 150-byte cap: the migrated rows go first, the one still to deliver stays
    assert ob.history.stats.dropped_size >= 2 and [s.frame.fcnt for s in ob.load(0, 10)] == [13, 14]
    ob.close()
