"""The node registry on real SQLite: CRUD, validation, file permissions, schema versions, sharing."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from gateway.frames import Node, NodeFormat, NodeRegistry, PayloadCodec, RegistryError
from gateway.frames.registry import SCHEMA_VERSION
from gateway.statedb import StateDbError
from tests.frames.conftest import KEY


def test_add_get_list_remove(registry: NodeRegistry) -> None:
    added = registry.add(
        Node(0x1234, "garden", key=KEY, model_id=3, interval_s=60.0, latitude=52.1, longitude=4.3)
    )
    assert added.key == KEY and added.created_utc and added.next_fcnt == 0
    registry.add(Node(7, "rh", format=NodeFormat.RADIOHEAD, radiohead_address=9, payload=PayloadCodec.RAW))
    assert [n.node_id for n in registry.nodes()] == [7, 0x1234]
    assert registry.find("garden") == registry.find("0x1234") == registry.find("4660") == added
    assert registry.find(7).payload_codec is PayloadCodec.RAW
    registry.remove(7)
    assert registry.get(7) is None
    with pytest.raises(RegistryError, match="no node 7"):
        registry.remove(7)
    with pytest.raises(RegistryError) as err:
        registry.find("nobody")
    assert err.value.reason == "unknown_node"


def test_conflicts_are_named(registry: NodeRegistry) -> None:
    registry.add(Node(1, "a", format=NodeFormat.RADIOHEAD, radiohead_address=5))
    with pytest.raises(RegistryError, match="already registered"):
        registry.add(Node(1, "b"))
    with pytest.raises(RegistryError, match="named 'a'"):
        registry.add(Node(2, "a"))
    with pytest.raises(RegistryError, match="RadioHead address 5"):
        registry.add(Node(3, "c", format=NodeFormat.RADIOHEAD, radiohead_address=5))


@pytest.mark.parametrize(
    ("node", "fragment"),
    [
        (Node(2**32, "x"), "outside"),
        (Node(1, ""), "name"),
        (Node(1, "42"), "reads as a node id"),
        (Node(1, "x", format=NodeFormat.LPP, key=KEY), "only format 'frame'"),
        (Node(1, "x", key=b"short"), "16 bytes"),
        (Node(1, "x", format=NodeFormat.RADIOHEAD), "needs --radiohead-address"),
        (Node(1, "x", format=NodeFormat.RADIOHEAD, radiohead_address=255), "broadcast"),
        (Node(1, "x", radiohead_address=3), "needs format radiohead"),
        (Node(1, "x", payload=PayloadCodec.LPP), "only for radiohead"),
        (Node(1, "x", model_id=16), "0..15"),
        (Node(1, "x", interval_s=0), "> 0"),
        (Node(1, "x", latitude=91.0, longitude=0.0), "not on Earth"),
        (Node(1, "x", latitude=1.0), "both"),
    ],
)
def test_validation(registry: NodeRegistry, node: Node, fragment: str) -> None:
    with pytest.raises(RegistryError, match=fragment):
        registry.add(node)
    assert registry.nodes() == []


def test_reset_counter_bumps_the_epoch(registry: NodeRegistry) -> None:
    registry.add(Node(1, "a"))
    registry.set_next_fcnt(1, 500)
    registry.set_next_fcnt(1, 400)  # never lowered by the service path
    assert registry.get(1).next_fcnt == 500
    node = registry.reset_counter(1)
    assert (node.next_fcnt, node.counter_epoch) == (0, 1)
    assert registry.reset_counter(1, 77).counter_epoch == 2
    with pytest.raises(RegistryError):
        registry.reset_counter(1, 2**32)


def test_database_and_wal_are_private(tmp_path) -> None:
    state = tmp_path / "state"
    with NodeRegistry.open(state) as registry:
        registry.add(Node(1, "a", key=KEY))
        files = [p for p in state.iterdir() if p.name.startswith("gateway.db")]
        assert {p.name for p in files} >= {"gateway.db", "gateway.db-wal"}
        for path in files:
            assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(os.stat(state).st_mode) & 0o077 == 0


def test_existing_world_readable_file_is_tightened(tmp_path) -> None:
    db = tmp_path / "gateway.db"
    sqlite3.connect(db).executescript("CREATE TABLE t (x); DROP TABLE t;")  # as an older version made it
    os.chmod(db, 0o644)
    NodeRegistry(db).close()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_shares_the_database_with_other_components(tmp_path) -> None:
    """The outbox lives in the same file and may use PRAGMA user_version for its own schema."""
    db = tmp_path / "gateway.db"
    other = sqlite3.connect(db)
    other.executescript("CREATE TABLE outbox (id INTEGER PRIMARY KEY, body BLOB); PRAGMA user_version = 7;")
    other.close()
    with NodeRegistry(db) as registry:
        registry.add(Node(1, "a"))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 7
    assert con.execute("SELECT version FROM schema_versions WHERE component='nodes'").fetchone()[0] == 2
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # The outbox's side of the contract: advance next_fcnt in its own transaction.
    with con:
        con.execute("INSERT INTO outbox (body) VALUES (x'00')")
        con.execute("UPDATE nodes SET next_fcnt = ? WHERE node_id = ? AND counter_epoch = ?", (9, 1, 0))
    con.close()
    with NodeRegistry(db) as registry:
        assert registry.get(1).next_fcnt == 9


def test_newer_schema_is_refused(tmp_path) -> None:
    db = tmp_path / "gateway.db"
    NodeRegistry(db).close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE schema_versions SET version = ? WHERE component = 'nodes'", (SCHEMA_VERSION + 1,))
    con.close()
    with pytest.raises(RegistryError, match="newer than this gateway"):
        NodeRegistry(db)


def test_not_a_database(tmp_path) -> None:
    db = tmp_path / "gateway.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateDbError, match=r"not a usable database.*state init --force"):
        NodeRegistry(db)
