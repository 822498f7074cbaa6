"""Switching a node's model: refused unless the node reported holding the version and the gateway has it
installed (``lora-gw nodes set-model`` and MQTT alike); reports survive a restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway import statedb
from gateway.cli import main as cli
from gateway.codec import Model, ModelStore, demo_model, weights
from gateway.downlink.commands import DownlinkStore
from gateway.downlink.dutycycle import DutyCycleLedger, sub_bands
from gateway.downlink.manager import Downlinker, DownlinkSettings, Uplink
from gateway.downlink.nodeinfo import NodeInfoStore
from gateway.downlink.scheduler import TxQueue
from gateway.frames import FrameEncoder, Node, NodeFormat, NodeRegistry, nodeinfo
from gateway.frames.downlink import DownlinkDecoder
from gateway.frames.nodeinfo import HeldModel, NodeInfo, held_model
from gateway.radio.sx1276 import LoRaConfig
from tests.history.util import install_demo
from tests.service.core_util import Running
from tests.service.test_service import wait

NODE = 0x5101


def version_2(state: Path, version: int = 2) -> Model:
    """The demo model again as another version (another fingerprint), installed staged."""
    demo = demo_model()
    m = Model(
        demo.schema, demo.params, demo.samples_per_frame, model_id=0, version=version, meta=dict(demo.meta)
    )
    src = state / f"v{version}.npz"
    weights.save(m, src)
    ModelStore(state).install(src, activate=False)
    src.unlink()
    return m


@pytest.fixture
def state(tmp_path) -> Path:
    state = tmp_path / "state"
    with NodeRegistry.open(state) as reg:
        reg.add(Node(NODE, "sim-1"))
        reg.add(Node(7, "rh", format=NodeFormat.RADIOHEAD, radiohead_address=7))
    return state


def report(state: Path, info: NodeInfo, fcnt: int = 0, counter_epoch: int = 0):
    db = statedb.connect(state / "gateway.db")
    try:
        return NodeInfoStore(db).record(NODE, nodeinfo.encode(info), fcnt, counter_epoch)
    finally:
        db.close()


def run(state: Path, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--state-dir", str(state), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def queued(state: Path) -> list[tuple[int, bytes, str]]:
    with sqlite3.connect(state / "gateway.db") as db:
        has = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'downlink_commands'").fetchone()
        rows = db.execute("SELECT node_id, payload, status FROM downlink_commands") if has else []
        return [(n, bytes(p), s) for n, p, s in rows]


def test_cli_switches_only_to_a_version_the_node_reported_and_the_gateway_has(state, capsys) -> None:
    v1, v2 = install_demo(state), version_2(state)

    def refused(ref: str, *extra: str) -> str:
        code, out, err = run(state, capsys, "nodes", "set-model", "sim-1", ref, *extra)
        assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("lora-gw: ")
        return err

    assert "node sim-1 has not reported the models its firmware holds; refused (--force" in refused("0@2")
    report(state, NodeInfo((1, 0, 0), (0, 1), (held_model(0, 1, v1.fingerprint),)))
    err = refused("0@2", "--force")  # --force overrides a missing report only
    assert "node sim-1 reported holding 0@1 (" in err and "), not 0@2; refused" in err
    report(state, NodeInfo((1, 0, 0), (0, 1), (HeldModel(0, 2, b"\xde\xad\xbe\xef"),)), fcnt=1)
    err = refused("0@2", "--force")
    assert "holds another model 0@2 (fingerprint deadbeef…" in err and "model_mismatch" in err
    # never overridden: the gateway could not decode what the node would send
    assert "model 0@3 is not installed on the gateway" in refused("0@3", "--force")
    assert "model 0@3 is not installed on the gateway" in refused("0@3")
    assert "outside 0..65535" in refused("0@70000")
    assert "give the version too" in refused("0")
    code, _, err = run(state, capsys, "nodes", "set-model", "rh", "0@2", "--force")
    assert code == 2 and "node 7: format radiohead nodes take no downlink commands" in err
    assert queued(state) == []  # nothing refused was queued

    report(
        state,
        NodeInfo((1, 0, 0), (0, 1), tuple(held_model(0, m.version, m.fingerprint) for m in (v1, v2))),
        2,
    )
    code, out, err = run(state, capsys, "nodes", "set-model", "sim-1", "0@2", "--confirm", "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "node_id": NODE,
        "name": "sim-1",
        "model": "0@2",
        "id": "set-model-0@2",
        "payload_hex": "02000200",
        "status": "queued",
        "warning": None,
    }
    assert queued(state) == [(NODE, b"\x02\x00\x02\x00", "queued")]
    code, out, _ = run(state, capsys, "nodes", "show", "sim-1", "--json")
    shown = json.loads(out)
    assert shown["node_info"]["models"][1] == {
        "model_id": 0,
        "version": 2,
        "fp_prefix": v2.fingerprint[:4].hex(),
    }
    assert [(c["id"], c["status"]) for c in shown["commands"]] == [("set-model-0@2", "queued")]
    code, out, _ = run(state, capsys, "nodes", "show", "sim-1")
    assert "firmware    1.0.0 (reported" in out and "holds       0@1 (fingerprint" in out
    assert "set-model-0@2 02000200 queued" in out
    code, out, _ = run(state, capsys, "nodes", "list")
    assert "FIRMWARE  HOLDS" in out and "1.0.0     0@1, 0@2" in out


def test_force_sends_to_a_node_that_never_reported_and_says_so(state, capsys) -> None:
    install_demo(state)
    version_2(state)
    code, out, err = run(state, capsys, "nodes", "set-model", "0x5101", "0@2", "--force", "--id", "fw-old")
    assert code == 0 and "set model 0@2 queued (id fw-old)" in out
    assert "has not reported" in err and "sent anyway (--force)" in err and err.count("\n") == 1
    assert queued(state) == [(NODE, b"\x02\x00\x02\x00", "queued")]


class Wall:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def downlinker(state: Path, clock=lambda: 0.0) -> tuple[Downlinker, NodeRegistry, sqlite3.Connection]:
    reg = NodeRegistry.open(state)
    db = statedb.connect(state / "gateway.db")
    store = ModelStore(state)

    def installed(mid: int, version: int) -> bytes | None:
        return store.load(mid, version).fingerprint if version in store.versions(mid) else None

    dl = Downlinker(
        reg.get,
        DownlinkStore(db, Wall()),
        DutyCycleLedger(db, sub_bands("EU868", 1.0), Wall()),
        TxQueue(),
        LoRaConfig().time_on_air_s,
        DownlinkSettings(),
        node_by_topic=reg.find,
        info=NodeInfoStore(db),
        installed=installed,
        clock=clock,
    )
    return dl, reg, db


def test_mqtt_set_model_is_checked_counted_and_reports_survive_a_restart(state) -> None:
    v1, v2 = install_demo(state), version_2(state)
    dl, reg, db = downlinker(state)
    try:
        dl.command("sim-1", json.dumps({"payload_hex": "02000200", "id": "a"}).encode())
        dl.command("sim-1", json.dumps({"payload_hex": "02000300", "id": "b", "force": True}).encode())
        info = NodeInfo(
            (2, 1, 0), (0, 1), (held_model(0, 1, v1.fingerprint), held_model(0, 2, v2.fingerprint))
        )
        dl.report(NODE, nodeinfo.encode(info), fcnt=4, counter_epoch=0)
        dl.command("sim-1", json.dumps({"payload_hex": "02000200", "id": "c", "confirm": True}).encode())
        statuses = [json.loads(p) for _, p in dl.statuses]
        assert [(s["id"], s["status"]) for s in statuses] == [
            ("a", "rejected"),
            ("b", "rejected"),
            ("c", "queued"),
        ]
        assert statuses[0]["reason"].startswith("model switch refused: node sim-1 has not reported")
        assert "model 0@3 is not installed on the gateway" in statuses[1]["reason"]
        assert dl.stats()["model_switch_refused"] == {"not_reported": 1, "not_installed": 1}
        assert dl.stats()["node_info_reports"] == 1 and dl.stats()["commands_rejected"] == 2
        # an older report (a replay the gateway took again after a restart) changes nothing
        dl.report(NODE, nodeinfo.encode(NodeInfo((1, 0, 0), None, ())), fcnt=3, counter_epoch=0)
        assert dl.info.get(NODE).info == info  # type: ignore[union-attr]
    finally:
        db.close()
        reg.close()
    dl, reg, db = downlinker(state)  # "restart": a new connection, store and manager
    try:
        kept = dl.info.get(NODE)  # type: ignore[union-attr]
        assert kept is not None and kept.info == info and kept.fcnt == 4
        # after an operator counter reset the counters start again: a lower one is a new report
        dl.report(NODE, nodeinfo.encode(NodeInfo((3, 0, 0), (0, 2), info.models)), fcnt=0, counter_epoch=1)
        assert dl.info.get(NODE).info.firmware_version == "3.0.0"  # type: ignore[union-attr]
    finally:
        db.close()
        reg.close()


def test_a_command_queued_beside_the_service_goes_in_the_next_window(state, capsys) -> None:
    """``nodes set-model`` writes the queue; the running core notices it within a second."""
    v1 = install_demo(state)
    version_2(state)
    now = [0.0]
    dl, reg, db = downlinker(state, clock=lambda: now[0])
    try:
        report(state, NodeInfo((1, 0, 0), (0, 1), (held_model(0, 1, v1.fingerprint),)))
        assert run(state, capsys, "nodes", "set-model", "sim-1", "0@1")[0] == 0
        dl.committed(Uplink(NODE, 0, False, 10.0, 868_100_000))
        assert len(dl.queue) == 0  # not seen yet
        now[0] = 1.5
        dl.poll_results()
        dl.committed(Uplink(NODE, 1, False, 20.0, 868_100_000))
        req = dl.queue.pop()
        assert req is not None and len(dl.queue) == 0
        down = DownlinkDecoder(NODE, None).decode(req.payload)
        assert down.command == b"\x02\x00\x01\x00"
    finally:
        db.close()
        reg.close()


def test_a_report_opens_its_receive_window_like_any_uplink(state, broker) -> None:
    """Through the real core: the report is stored, then acknowledged (it asked) with the queued command."""
    install_demo(state)
    dl, reg, db = downlinker(state)
    dl.command("sim-1", b'{"payload_hex": "011e00", "id": "iv"}')
    gw = Running(state / "gateway.db", broker.port, downlink=dl)
    try:
        info = NodeInfo((1, 4, 2), None, ())
        gw.submit(FrameEncoder(NODE).encode_info(info, ack_requested=True))
        assert wait(lambda: len(dl.queue) == 1, 10)
    finally:
        gw.stop()
    req = dl.queue.pop()
    assert req is not None and req.kind == "ack+command"
    down = DownlinkDecoder(NODE, None).decode(req.payload)
    assert (down.acked_fcnt, down.command) == (0, b"\x01\x1e\x00")
    try:
        assert dl.info.get(NODE).info == info  # type: ignore[union-attr]
        assert gw.core.stats()["control"] == {"node_info": 1} and gw.core.stats()["drops"] == {}
    finally:
        db.close()
        reg.close()
