"""One message can never stop the others: bad legacy names, poison messages and the operator's
``lora-gw outbox list|retry|drop``, against a real Mosquitto."""

from __future__ import annotations

import json
import logging
import sqlite3
import time

import pytest

from gateway.frames import Node, NodeRegistry
from gateway.service.core import CoreSettings
from gateway.sinks.mqtt import Unpublishable

from .core_util import Running, encoders, register
from .helpers import Collector, run_cli
from .test_mqtt_sink import make_sink, wait_connected

LEGACY = {  # names an old registry accepted; each broke publishing for every node
    0x10: "tab\there",
    0x11: "x" * 70_000,
    0x12: "a/b+c#d",
    0x13: "ffff\uffff",
}


def small(enc) -> bytes:
    return enc.encode_lpp([(1, "temperature", 21.5)])


def big(enc) -> bytes:
    return enc.encode_lpp([(i, "temperature", 20.0 + i / 10) for i in range(50)])  # ~3.3 KB of JSON


def until(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def legacy_registry(db) -> None:
    """Nodes whose names were written before names were checked (as an old registry holds them)."""
    register(db, {0x2A: "weather", 0x13A: "a_b_c_d", **{nid: f"n{nid}" for nid in LEGACY}})
    with sqlite3.connect(db) as c:
        for nid, name in LEGACY.items():
            c.execute("UPDATE nodes SET name = ? WHERE node_id = ?", (name, nid))


def rows(db, where: str = "1") -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(
            f"SELECT id, node_id, state, reason FROM outbox WHERE {where} ORDER BY id"
        ).fetchall()


def test_legacy_bad_names_publish_under_their_id_and_every_node_keeps_flowing(tmp_path, broker):
    db = tmp_path / "gateway.db"
    legacy_registry(db)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    nodes = [*LEGACY, 0x2A, 0x13A]
    enc = encoders(dict.fromkeys(nodes, ""))
    for _ in range(3):
        for nid in nodes:
            gw.submit(small(enc[nid]))
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 18)
    gw.stop()
    topics = {m["node_id"]: m["node_name"] for m in sub.json_on("/telemetry")}
    assert topics == {
        **{nid: f"id-{nid:08x}" for nid in LEGACY},
        0x2A: "weather",
        0x13A: "a_b_c_d",  # no longer shares a topic with "a/b+c#d"
    }
    published = {t for t, _, _ in sub.messages if t.endswith("/telemetry")}
    assert len(published) == len(nodes)
    assert gw.sink.stats.disconnects == 0 and gw.core.parked == 0
    assert rows(db) == []  # every frame delivered
    sub.close()


def test_unusable_topics_are_refused_before_sending_and_the_connection_stays_up(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    for topic in (
        "lora/gw/nodes/tab\there/raw",
        "lora/\uffff/x",
        "lora/" + "x" * 70_000,
        "lora/+/x",
        "a\udcff",
    ):
        with pytest.raises(Unpublishable):
            sink.publish(topic, b"{}", token="bad")
    assert sink.publish("lora/gw/nodes/ok/raw", b"{}", token="good")
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        sink.wait(0.01)
        got = sink.poll()
    assert [(d.token, d.status) for d in got] == [("good", "ok")]
    assert sink.stats.disconnects == 0 and sink.connected
    sink.stop()


def test_poison_message_is_parked_logged_once_and_the_queue_flows(tmp_path, broker_factory, caplog):
    broker = broker_factory(extra=("max_packet_size 2500",))
    db = tmp_path / "gateway.db"
    register(db, {0x2A: "weather", 0x1234: "soil"})
    sub = Collector(broker.port)
    enc = encoders({0x2A: "", 0x1234: ""})
    with caplog.at_level(logging.WARNING, logger="gateway.service.core"):
        gw = Running(db, broker.port, settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3))
        until(lambda: gw.sink.connected)
        gw.submit(big(enc[0x2A]))  # head of the queue, and over the broker's maximum packet size
        for i in range(10):
            gw.submit(small(enc[0x1234 if i % 2 else 0x2A]))
        assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 10)
        assert until(lambda: rows(db, "state = 2") != [])
        gw.stop()
    assert gw.core.parked == 1 and gw.core.stats()["parked"] == 1
    assert gw.sink.stats.disconnects == 0  # never sent: the broker announced its limit
    ((rid, nid, state, reason),) = rows(db)  # the 10 others were delivered and deleted
    assert (nid, state) == (0x2A, 2) and "maximum packet size 2500" in reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "0000002a fcnt 0" in warnings[0] and "maximum packet size" in warnings[0]

    # It survives a restart without blocking (or being resent), and the operator sees it.
    gw = Running(db, broker.port, settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3))
    gw.submit(small(enc[0x1234]))
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 11)
    assert gw.core.outbox.stats.parked == 1 and gw.core.parked == 0
    listed = run_cli(tmp_path, "outbox", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["id"] == rid and entry["node_id"] == 0x2A and entry["fcnt"] == 0
    assert entry["state"] == "parked" and "maximum packet size" in entry["reason"] and entry["parked_ms"]
    assert entry["node_name"] == "weather"
    text = run_cli(tmp_path, "outbox", "list")
    assert str(rid) in text.stdout and "0x0000002a" in text.stdout and "maximum packet size" in text.stdout

    # The operator raises the broker's limit and requeues it: the running service publishes it.
    gw.stop()
    broker.stop()
    broker.extra = ()
    broker.start()
    sub.close()
    sub = Collector(broker.port)
    gw = Running(db, broker.port, settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3))
    assert until(lambda: gw.sink.connected)
    retried = run_cli(tmp_path, "outbox", "retry", str(rid))
    assert retried.returncode == 0 and "requeued 1" in retried.stdout, retried.stderr
    assert sub.wait_for(lambda: any(len(m["values"]) == 50 for m in sub.json_on("/telemetry")))
    assert until(lambda: rows(db) == [])
    assert until(lambda: gw.core.outbox.stats.parked == 0 and gw.core.outbox.backlog == 0)
    gw.stop()
    assert run_cli(tmp_path, "outbox", "retry", str(rid)).returncode == 2  # nothing parked any more
    sub.close()


def test_outbox_drop_deletes_parked_rows_and_the_service_recounts(tmp_path, broker_factory):
    broker = broker_factory(extra=("max_packet_size 2500",))
    db = tmp_path / "gateway.db"
    register(db, {0x2A: "weather"})
    enc = encoders({0x2A: ""})
    gw = Running(db, broker.port, settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3))
    until(lambda: gw.sink.connected)
    for _ in range(3):
        gw.submit(big(enc[0x2A]))
    gw.submit(small(enc[0x2A]))
    assert until(lambda: len(rows(db, "state = 2")) == 3 and len(rows(db)) == 3)
    ids = [r[0] for r in rows(db)]
    dropped = run_cli(tmp_path, "outbox", "drop", str(ids[0]))
    assert dropped.returncode == 0 and f"dropped 1 parked message(s): {ids[0]}" in dropped.stdout
    assert "dropped by the operator" in dropped.stderr  # the WARNING, with node and reason
    assert until(lambda: gw.core.outbox.stats.parked == 2 and gw.core.outbox.backlog == 2)
    assert run_cli(tmp_path, "outbox", "drop", "--all").returncode == 0
    assert until(lambda: gw.core.outbox.stats.parked == 0 and gw.core.outbox.backlog == 0)
    gw.stop()
    assert rows(db) == []
    none = run_cli(tmp_path, "outbox", "list")
    assert none.returncode == 0 and "no parked messages" in none.stdout


def test_node_names_never_printed_raw_even_on_an_ascii_terminal(tmp_path):
    db = tmp_path / "gateway.db"
    reg = NodeRegistry(db)
    for nid in (1, 2, 3, 4):
        reg.add(Node(nid, f"n{nid}"))
    reg.close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE nodes SET name = ? WHERE node_id = 1", ("two\nlines",))
        c.execute("UPDATE nodes SET name = ? WHERE node_id = 2", ("\x1b[31mred\x1b[0m",))
        c.execute("UPDATE nodes SET name = ? WHERE node_id = 3", ("café",))
        c.execute("UPDATE nodes SET name = CAST(x'ff41' AS TEXT) WHERE node_id = 4")  # not UTF-8
    env = {"PYTHONIOENCODING": "ascii"}
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "--state-dir", str(tmp_path), "nodes", "list"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 5  # the header and one line per node: no name breaks a line
    assert "two\\nlines" in lines[1] and "\\x1b[31mred" in lines[2] and "\x1b" not in out.stdout
    assert "caf\\xe9" in lines[3] and "\\udcffA" in lines[4]
    shown = run_cli(tmp_path, "nodes", "show", "4", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "\udcffA"
    refused = run_cli(tmp_path, "nodes", "add", "9", "--name", "tab\there")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "tab\\there" in refused.stderr and "A-Z a-z 0-9 . _ -" in refused.stderr
    renamed = run_cli(tmp_path, "nodes", "rename", "1", "two-lines")
    assert renamed.returncode == 0, renamed.stderr
    assert NodeRegistry(db).get(1).name == "two-lines"


def test_lora_gw_run_reports_legacy_names_and_publishes_their_stored_frames(tmp_path, broker):
    """Before: a stored frame of the 70,000-character name made ``lora-gw run`` die at every start."""
    import signal

    from .test_service import start, write_config

    config = write_config(tmp_path, broker.port, nodes=1)
    db = tmp_path / "state" / "gateway.db"
    db.parent.mkdir(mode=0o700)
    legacy_registry(db)
    enc = encoders(dict.fromkeys(LEGACY, ""))
    dead = Running(db, 1, settings=CoreSettings(shutdown_flush_s=0.1))  # no broker: frames stay stored
    for nid in LEGACY:
        dead.submit(small(enc[nid]))
    assert until(lambda: dead.core.outbox.stats.stored == len(LEGACY))
    dead.stop()
    sub = Collector(broker.port)
    proc = start(config)
    try:
        expected = {f"id-{nid:08x}" for nid in LEGACY}
        assert sub.wait_for(lambda: expected <= {m["node_name"] for m in sub.json_on("/telemetry")}, 30)
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    warnings = [line for line in err.splitlines() if "registered name" in line]
    assert len(warnings) == len(LEGACY) and all(line.isascii() for line in warnings)
    assert sum("id-00000011" in line and "(70000 characters)" in line for line in warnings) == 1
    assert "Traceback" not in err
    assert rows(db) == []
    sub.close()


def test_message_the_broker_answers_by_closing_the_connection_is_isolated_and_parked(
    tmp_path, broker_factory
):
    """Mosquitto's message_size_limit answers PUBACK 0x95, which paho cannot parse: it drops the
    connection and, before, resent the message first after every reconnect, forever."""
    broker = broker_factory(extra=("message_size_limit 2500",))
    db = tmp_path / "gateway.db"
    register(db, {0x2A: "weather", 0x1234: "soil"})
    sub = Collector(broker.port)
    enc = encoders({0x2A: "", 0x1234: ""})
    gw = Running(db, broker.port)
    until(lambda: gw.sink.connected)
    gw.submit(big(enc[0x2A]))
    for i in range(10):
        gw.submit(small(enc[0x1234 if i % 2 else 0x2A]))
    assert sub.wait_for(lambda: len(set(sub.msg_ids())) >= 10, 30)
    assert until(lambda: len(rows(db)) == 1 and rows(db, "state = 2") != [])
    for _ in range(5):  # and after it, the full window again
        gw.submit(small(enc[0x1234]))
    assert sub.wait_for(lambda: len(set(sub.msg_ids())) >= 15)
    gw.stop()
    ((_, nid, state, reason),) = rows(db)
    assert (nid, state) == (0x2A, 2) and "closed the connection" in reason and "2 times" in reason
    assert gw.core.parked == 1 and gw.sink._isolating == 0
    # everything else delivered (some twice: PUBACKs the broker had queued die with the connection)
    expected = {f"00001234-{f}" for f in range(10)} | {f"0000002a-{f}" for f in range(1, 6)}
    assert set(sub.msg_ids()) == expected
    sub.close()
