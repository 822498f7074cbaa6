"""Command validation, the durable per-node queue, statuses, secured command downlinks."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.downlink.commands import (
    MAX_COMMAND_BYTES,
    CommandRejected,
    DownlinkStore,
    Request,
    parse_command,
)
from gateway.downlink.dutycycle import DutyCycleLedger, sub_bands
from gateway.downlink.manager import Downlinker, DownlinkSettings, Uplink
from gateway.downlink.scheduler import TxQueue
from gateway.frames import FrameType, Node, NodeRegistry
from gateway.frames.downlink import DownlinkDecoder
from gateway.radio.sx1276 import LoRaConfig

KEY = bytes(range(16))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "malformed"),
        (b"[1]", "malformed"),
        (b'{"payload_hex": "zz"}', "malformed"),
        (b'{"payload_hex": "01", "payload_b64": "AQ=="}', "malformed"),
        (b'{"payload_b64": "!!"}', "malformed"),
        (b'{"payload_hex": "01", "confirm": "yes"}', "malformed"),
        (b'{"payload_hex": "01", "expires_s": -1}', "malformed"),
        (b'{"payload_hex": "01", "colour": 1}', "malformed"),
        (b'{"payload_hex": "01", "force": 1}', "malformed"),
        (json.dumps({"payload_hex": "00" * (MAX_COMMAND_BYTES + 1)}).encode(), "oversized"),
    ],
)
def test_bad_commands_rejected_with_reason(raw, reason):
    with pytest.raises(CommandRejected) as e:
        parse_command(raw)
    assert e.value.reason.startswith(reason)


def test_good_command_parsed():
    assert parse_command(b'{"payload_b64": "AR4A", "confirm": true, "expires_s": 60, "id": 7}') == Request(
        b"\x01\x1e\x00", True, 60.0, "7", False
    )
    assert parse_command(b'{"payload_hex": "02000100", "force": true}').force


class Wall:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _rig(tmp_path, wall, max_queue=8):
    reg = NodeRegistry(tmp_path / "gateway.db")
    if reg.get(0x2A) is None:
        reg.add(Node(node_id=0x2A, name="pump", key=KEY))
    db = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    store = DownlinkStore(db, wall, max_queue)
    q = TxQueue()
    led = DutyCycleLedger(db, sub_bands("EU868", 1.0), wall)
    dl = Downlinker(
        reg.get,
        store,
        led,
        q,
        LoRaConfig().time_on_air_s,
        DownlinkSettings(),
        node_by_topic=lambda t: reg.find(t),
    )
    return reg, db, store, q, dl


def _statuses(dl):
    out = [(t.rsplit("/", 3)[-3], json.loads(p)) for t, p in dl.statuses]
    dl.statuses.clear()
    return out


def test_queue_bounded_and_survives_restart(tmp_path):
    wall = Wall()
    reg, db, store, _q, dl = _rig(tmp_path, wall, max_queue=2)
    dl.command("pump", b'{"payload_hex": "0101", "id": "a"}')
    dl.command("pump", b'{"payload_hex": "0102", "id": "b"}')
    dl.command("pump", b'{"payload_hex": "0103", "id": "c"}')
    st = _statuses(dl)
    assert [s["status"] for _, s in st] == ["queued", "queued", "rejected"]
    assert st[2][1]["reason"].startswith("queue full") and st[2][0] == "pump"
    db.close()
    reg.close()
    reg, db, store, q, dl = _rig(tmp_path, wall)  # a restart
    cmd, expired = store.next_for(0x2A)
    assert cmd is not None and cmd.cmd_id == "a" and cmd.payload == b"\x01\x01" and not expired
    dl.committed(Uplink(0x2A, 5, False, 1000.0, 868_100_000))
    req = q.pop()
    assert req is not None and req.due_s == 1001.0 and req.kind == "command"
    # the secured downlink: encrypted, MIC-protected, Dir = 1, the gateway's own counter
    down = DownlinkDecoder(0x2A, KEY).decode(req.payload)
    assert down.frame_type is FrameType.COMMAND and down.command == b"\x01\x01" and down.fcnt == 0
    assert b"\x01\x01" not in req.payload[4:-4]
    req.on_result("sent")
    dl.poll_results()
    assert [s["status"] for _, s in _statuses(dl)] == ["sent"]
    reg.close()


def test_expired_command_never_sent_and_ack_carries_command(tmp_path):
    wall = Wall()
    reg, _db, _store, q, dl = _rig(tmp_path, wall)
    dl.command("pump", b'{"payload_hex": "0101", "id": "old", "expires_s": 10}')
    dl.command("pump", b'{"payload_hex": "021e00", "id": "new", "confirm": true}')
    wall.t += 11
    dl.committed(Uplink(0x2A, 9, True, 1000.0, 868_100_000))
    req = q.pop()
    assert req is not None and req.kind == "ack+command" and len(q) == 0
    down = DownlinkDecoder(0x2A, KEY).decode(req.payload)
    assert down.acked_fcnt == 9 and down.command == b"\x02\x1e\x00" and down.confirm
    req.on_result("sent")
    dl.poll_results()
    # the node's next uplink: frame type 1 carrying the downlink counter it acknowledges
    dl.control(0x2A, FrameType.ACK, (down.fcnt + 1).to_bytes(2, "little"))  # another counter: ignored
    dl.control(0x2A, FrameType.ACK, down.fcnt.to_bytes(2, "little"))
    assert [(s["id"], s["status"]) for _, s in _statuses(dl)] == [
        ("old", "queued"),
        ("new", "queued"),
        ("old", "expired"),
        ("new", "sent"),
        ("new", "acknowledged"),
    ]
    reg.close()


def test_downlink_counter_persisted_and_never_reused(tmp_path):
    wall = Wall()
    reg, db, store, _q, _dl = _rig(tmp_path, wall)
    assert [store.take_fcnt(0x2A, 0) for _ in range(3)] == [0, 1, 2]
    db.close()
    store2 = DownlinkStore(sqlite3.connect(tmp_path / "gateway.db", isolation_level=None), wall)
    assert store2.take_fcnt(0x2A, 0) == 3
    assert store2.take_fcnt(0x2A, 1) == 0  # a new key epoch: new keys, counter from 0
    reg.close()


def test_unacknowledged_confirmed_command_sent_again_then_given_up(tmp_path):
    wall = Wall()
    _reg, _db, _store, q, dl = _rig(tmp_path, wall)
    dl.command("pump", b'{"payload_hex": "0105", "id": "c", "confirm": true}')
    counters = []
    for fcnt in range(4):  # telemetry uplinks, none of them the acknowledgement
        dl.committed(Uplink(0x2A, fcnt, False, 1000.0 + fcnt * 10, 868_100_000))
        req = q.pop()
        if req is not None:
            counters.append(DownlinkDecoder(0x2A, KEY, next_fcnt=len(counters)).decode(req.payload).fcnt)
            req.on_result("sent")
            dl.poll_results()
    assert counters == [0, 1, 2]  # three sends (max_sends), each with a new downlink counter
    st = [(s["status"], s.get("reason")) for _, s in _statuses(dl)]
    assert st == [("queued", None), ("sent", None), ("sent", None), ("sent", None),
                  ("expired", "not acknowledged after 3 sends")]  # fmt: skip
    _reg.close()


def test_command_in_flight_at_a_crash_is_queued_again(tmp_path):
    wall = Wall()
    reg, db, _store, q, dl = _rig(tmp_path, wall)
    dl.command("pump", b'{"payload_hex": "0107", "id": "x"}')
    dl.committed(Uplink(0x2A, 1, False, 1000.0, 868_100_000))
    assert q.pop() is not None  # handed to the radio thread; the process dies before the result
    db.close()
    reg.close()
    _reg2, _db2, store2, _q2, _dl2 = _rig(tmp_path, wall)
    cmd, _ = store2.next_for(0x2A)
    assert cmd is not None and cmd.cmd_id == "x"
    _reg2.close()


def test_acknowledgement_of_an_earlier_send_accepted_after_the_command_went_again(tmp_path):
    """The node's acknowledgement may come after a telemetry uplink has already made the gateway send the
    command again: it carries the first send's counter, and still acknowledges the command."""
    wall = Wall()
    reg, _db, store, q, dl = _rig(tmp_path, wall)
    dl.command("pump", b'{"payload_hex": "0106", "id": "late", "confirm": true}')
    dl.committed(Uplink(0x2A, 1, False, 1000.0, 868_100_000))
    first = q.pop()
    assert first is not None
    first.on_result("sent")
    dl.poll_results()
    dl.committed(Uplink(0x2A, 2, False, 1010.0, 868_100_000))  # telemetry, not the acknowledgement yet
    second = q.pop()
    assert second is not None  # the command goes again, with the next downlink counter
    assert DownlinkDecoder(0x2A, KEY, next_fcnt=1).decode(second.payload).fcnt == 1
    dl.control(0x2A, FrameType.ACK, (7).to_bytes(2, "little"))  # a counter never sent: ignored
    dl.control(0x2A, FrameType.ACK, (0).to_bytes(2, "little"))  # the first send's, while the second flies
    second.on_result("sent")
    dl.poll_results()
    assert [(s["id"], s["status"]) for _, s in _statuses(dl)] == [
        ("late", "queued"),
        ("late", "sent"),
        ("late", "acknowledged"),
    ]
    assert store.status(1) == "acknowledged"
    dl.committed(Uplink(0x2A, 3, False, 1020.0, 868_100_000))
    assert q.pop() is None  # acknowledged: neither sent again nor expired
    assert _statuses(dl) == []
    reg.close()


def test_an_acknowledgement_heard_before_the_core_took_its_sent_result_keeps_the_order(tmp_path):
    """The radio thread hands back "sent" and, a moment later, hears the node's acknowledgement; the
    core may take the packet before the result. Reproduced in the service (a confirmed set-model
    command answered at once): "sent" was never published, because the acknowledgement came first."""
    wall = Wall()
    reg, _db, store, q, dl = _rig(tmp_path, wall)
    woken = []
    dl.wake = lambda: woken.append(1)
    dl.command("pump", b'{"payload_hex": "0109", "id": "now", "confirm": true}')
    dl.committed(Uplink(0x2A, 4, False, 1000.0, 868_100_000))
    req = q.pop()
    assert req is not None
    down = DownlinkDecoder(0x2A, KEY).decode(req.payload)
    req.on_result("sent")  # radio thread
    assert woken == [1]  # the core wakes for it, not at its next timeout
    dl.control(0x2A, FrameType.ACK, down.fcnt.to_bytes(2, "little"))  # core: the answer, results not polled
    dl.poll_results()
    assert [(s["id"], s["status"]) for _, s in _statuses(dl)] == [
        ("now", "queued"),
        ("now", "sent"),
        ("now", "acknowledged"),
    ]
    assert store.status(1) == "acknowledged"
    reg.close()
