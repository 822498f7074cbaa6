"""Decoder behaviours the mutation run (bench/mutation.py) found untested: the counter epoch a decoded
frame carries, in-memory counters kept across a registry reload, open frames of unknown nodes never
credited to the bare-LPP node, and the registry re-read limit on a clock that does not start at 0."""

from __future__ import annotations

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, NodeFormat, NodeRegistry
from gateway.frames.decoder import DecoderSettings
from gateway.frames.registry import RegistryError
from gateway.frames.wire import crc16

from .conftest import KEY

NODE = 0x01020304


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reason_of(decoder: FrameDecoder, data: bytes) -> str:
    with pytest.raises(FrameError) as err:
        decoder.decode(data)
    return err.value.reason


def test_after_reset_counter_a_frame_carries_the_new_epoch_accepted_once(
    registry: NodeRegistry,
) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    dec = FrameDecoder(registry)
    enc = FrameEncoder(NODE, KEY)
    for _ in range(3):
        dec.accept(dec.decode(enc.encode(b"x")))
    node = registry.reset_counter(NODE, 10)  # same keys, counter epoch 1
    dec.reload()
    data = enc.encode(b"after", fcnt=10)
    frame = dec.decode(data)
    assert frame.counter_epoch == node.counter_epoch == 1
    dec.accept(frame)
    assert dec.next_fcnt(NODE) == 11
    assert reason_of(dec, data) == "duplicate"  # the same secured frame is not accepted again
    for _ in range(3):
        assert reason_of(dec, data) == "duplicate"


def test_bare_and_radiohead_frames_carry_the_epoch_too(registry: NodeRegistry) -> None:
    registry.add(Node(80, "bare", format=NodeFormat.LPP))
    registry.add(Node(70, "rh", format=NodeFormat.RADIOHEAD, radiohead_address=3))
    dec = FrameDecoder(registry)
    registry.reset_counter(80, 5)
    registry.reset_counter(70, 7)
    registry.reset_counter(70, 7)
    dec.reload()
    bare = dec.decode(bytes.fromhex("0367010a"))
    assert (bare.node_id, bare.fcnt, bare.counter_epoch) == (80, 5, 1)
    dec.accept(bare)
    assert dec.decode(bytes.fromhex("0367010a")).fcnt == 6
    rh = dec.decode(bytes([0xFF, 3, 1, 0]) + bytes.fromhex("0367010a"))
    assert (rh.node_id, rh.fcnt, rh.counter_epoch) == (70, 7, 2)
    dec.accept(rh)
    assert dec.next_fcnt(70) == 8


def test_a_reload_keeps_a_secured_nodes_in_memory_counter(registry: NodeRegistry) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    dec = FrameDecoder(registry)
    enc = FrameEncoder(NODE, KEY)
    sent = []
    for _ in range(4):
        data = enc.encode(b"r")
        dec.accept(dec.decode(data))  # accepted, not yet persisted by the outbox
        sent.append(data)
    dec.reload()  # e.g. prompted by another node's unknown frame
    assert dec.next_fcnt(NODE) == 4
    assert reason_of(dec, sent[-1]) == "duplicate"
    for data in sent[:-1]:
        assert reason_of(dec, data) == "replay"
    registry.set_next_fcnt(NODE, 9)  # a stored value ahead (another process) wins
    dec.reload()
    assert dec.next_fcnt(NODE) == 9


def test_a_reload_with_a_new_key_takes_the_stored_counter(registry: NodeRegistry) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    dec = FrameDecoder(registry)
    enc = FrameEncoder(NODE, KEY)
    for _ in range(3):
        dec.accept(dec.decode(enc.encode(b"r")))
    registry.reset_counter(NODE, 0, new_epoch=True)
    dec.reload()
    assert dec.next_fcnt(NODE) == 0
    fresh = FrameEncoder(NODE, KEY, key_epoch=1)
    assert dec.decode(fresh.encode(b"n")).fcnt == 0


def _open_frame_that_is_also_lpp(node_id: int = 0x67) -> bytes:
    """00 | 67 | fcnt | 00 (raw) | 02 | CRC: as LPP, ch 0 temperature (fcnt), ch 0 analog input (CRC)."""
    msg = bytes([0x00, node_id, 0x10, 0x01, 0x00, 0x02])
    return msg + crc16(msg).to_bytes(2, "little")


def test_an_open_frame_of_an_unregistered_node_is_not_credited_to_the_bare_lpp_node(registry) -> None:
    registry.add(Node(80, "bare", format=NodeFormat.LPP))
    dec = FrameDecoder(registry)
    data = _open_frame_that_is_also_lpp()
    from gateway.frames import lpp

    assert len(lpp.decode(data)) == 2  # it would decode as a bare payload
    assert reason_of(dec, data) == "unknown_node"
    assert dec.next_fcnt(80) == 0
    registry.add(Node(0x67, "late-open"))
    dec.reload()
    frame = dec.decode(data)
    assert (frame.node_id, frame.fcnt) == (0x67, 0x0110)


def test_registry_reread_is_limited_on_a_clock_far_from_zero(registry: NodeRegistry) -> None:
    clock = Clock(10_000.0)
    dec = FrameDecoder(registry, DecoderSettings(refresh_interval_s=2.0), clock=clock)
    data = FrameEncoder(0x55).encode(b"hi")
    assert reason_of(dec, data) == "unknown_node"  # loaded just now: no re-read yet
    registry.add(Node(0x55, "new"))
    clock.t += 1.9
    assert reason_of(dec, data) == "unknown_node"
    clock.t += 0.1
    assert dec.decode(data).node_id == 0x55  # 2 s after the last read: re-read, found


def test_a_failed_reread_keeps_the_nodes_and_waits_a_full_interval(registry, monkeypatch) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    clock = Clock(5_000.0)
    dec = FrameDecoder(registry, DecoderSettings(refresh_interval_s=1.0), clock=clock)
    reads = []

    def broken() -> list[Node]:
        reads.append(clock.t)
        raise RegistryError("database is locked", "registry")

    real = registry.nodes
    monkeypatch.setattr(registry, "nodes", broken)
    data = FrameEncoder(0x56).encode(b"hi")
    clock.t += 1.0
    with pytest.raises(FrameError) as err:
        dec.decode(data)
    assert err.value.reason == "unknown_node" and reads == [5_001.0]  # the frame's own reason, not the DB's
    assert dec.decode(FrameEncoder(NODE, KEY).encode(b"k")).node_id == NODE  # loaded nodes kept
    monkeypatch.setattr(registry, "nodes", real)
    registry.add(Node(0x56, "new"))
    clock.t += 0.5
    assert reason_of(dec, data) == "unknown_node"  # within an interval of the failed read
    clock.t += 0.5
    assert dec.decode(data).node_id == 0x56
