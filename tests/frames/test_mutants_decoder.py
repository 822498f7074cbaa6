"""Decoder behaviours the mutation run (bench/mutation.py) found untested: the counter epoch a decoded
frame carries, in-memory counters kept across a registry reload, open frames of unknown nodes never
credited to the bare-LPP node, and the registry re-read limit on a clock that does not start at 0."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.frames import (
    FrameDecoder,
    FrameEncoder,
    FrameError,
    Node,
    NodeFormat,
    NodeRegistry,
    PayloadCodec,
    radiohead,
)
from gateway.frames.crypto import MAX_EPOCH
from gateway.frames.decoder import DecoderSettings
from gateway.frames.registry import RegistryError
from gateway.frames.wire import MAX_FRAME_LEN, crc16

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


# -- second pass (issue 17): inspect(), boundaries, foreign formats, the MIC mismatch message -----------



def _open(node_id: int, fcnt: int, payload: bytes = b"\x01", codec: int = 0x00) -> bytes:
    msg = bytes([0x00, node_id, fcnt & 0xFF, fcnt >> 8 & 0xFF, codec]) + payload
    return msg + crc16(msg).to_bytes(2, "little")


def _rh_raw(address: int) -> Node:
    return Node(
        71, "rh-raw", format=NodeFormat.RADIOHEAD, radiohead_address=address, payload=PayloadCodec.RAW
    )


def test_a_secured_model_frame_failing_its_mic_names_its_own_model(registry: NodeRegistry) -> None:
    """Bug fixed: the message read the counter's high byte instead of the codec byte."""
    registry.add(Node(0x1234, "sealed", key=KEY))  # a 2-byte node id: the codec byte is at 5
    dec = FrameDecoder(registry, models=lambda mid, mod8: [(2, b"B" * 8)] if mid == 5 else [])
    data = FrameEncoder(0x1234, KEY).encode(
        b"\x10\x20", codec=PayloadCodec.MODEL, model_id=5, model_version=2, fingerprint=b"A" * 8, fcnt=0x0903
    )
    with pytest.raises(FrameError) as err:
        dec.decode(data)
    assert err.value.reason == "model_mismatch"
    assert "MIC fails under every installed version of model 5 (v2)" in err.value.message


def test_inspect_forced_frame_reports_the_counter_verdict(registry: NodeRegistry) -> None:
    registry.add(Node(0x2A, "sealed", key=KEY))
    dec = FrameDecoder(registry)
    data = FrameEncoder(0x2A, KEY).encode(b"x")
    dec.accept(dec.decode(data))
    frame, verdict = dec.inspect(data, codec=NodeFormat.FRAME)
    assert (frame.node_id, frame.fcnt, verdict) == (0x2A, 0, "duplicate")
    frame, verdict = dec.inspect(data)  # detected as a frame: the same report, nothing raised
    assert (frame.fcnt, verdict) == (0, "duplicate")
    with pytest.raises(ValueError, match="cannot force format lpp"):
        dec.inspect(data, codec=NodeFormat.LPP)


def test_inspect_forced_radiohead(registry: NodeRegistry) -> None:
    registry.add(_rh_raw(4))
    dec = FrameDecoder(registry)
    frame, verdict = dec.inspect(radiohead.build(0xFF, 4, b"\x00\x01", ident=9), codec=NodeFormat.RADIOHEAD)
    assert (frame.node_id, frame.payload, verdict) == (71, b"\x00\x01", "no counter in this format")
    with pytest.raises(FrameError) as err:
        dec.inspect(radiohead.build(0xFF, 9, b"\x00"), codec=NodeFormat.RADIOHEAD)
    assert err.value.reason == "unknown_node" and "RadioHead FROM 9" in err.value.message


@pytest.mark.parametrize("to", [0x05, 0x50, 0xFF])
def test_inspect_detects_radiohead_whatever_its_first_byte(registry: NodeRegistry, to: int) -> None:
    """TO < 64 looks like a version-0 frame header, 64..127 like version 1: neither hides the packet."""
    registry.add(_rh_raw(4))
    dec = FrameDecoder(registry)
    frame, verdict = dec.inspect(radiohead.build(to, 4, b"\xaa\xbb\xcc"))
    assert (frame.node_id, frame.format, verdict) == (71, NodeFormat.RADIOHEAD, "no counter in this format")


def test_inspect_open_frames_of_unregistered_nodes_and_verified_errors(registry: NodeRegistry) -> None:
    dec = FrameDecoder(registry)
    frame, verdict = dec.inspect(_open(0x33, 0))
    assert (frame.node_id, frame.node_name, verdict) == (0x33, "unregistered-51", "new")
    bad_lpp = _open(0x33, 0, payload=b"\x01\x67", codec=0x01)  # LPP, truncated reading
    with pytest.raises(FrameError) as err:
        dec.inspect(bad_lpp)
    assert err.value.reason == "bad_payload"  # verified by its CRC: not hidden behind unknown_node
    with pytest.raises(FrameError) as err:
        dec.inspect(bytes([0x30, 0x33, 0, 0, 0, 1, 2, 3]))
    assert err.value.reason == "bad_version" and "type 3" in err.value.message


def test_inspect_open_frame_counter_gap_and_replay(registry: NodeRegistry) -> None:
    registry.add(Node(0x33, "open"))
    dec = FrameDecoder(registry, DecoderSettings(max_gap=10))
    frame, verdict = dec.inspect(_open(0x33, 50))
    assert (frame.fcnt, verdict) == (50, "counter_gap")
    registry.set_next_fcnt(0x33, 10)
    dec.reload()
    frame, verdict = dec.inspect(_open(0x33, 5))
    assert (frame.fcnt, verdict) == (5, "replay")


@pytest.mark.parametrize("data", [b"\x40", b"\x80\x00", b"\x30"])
def test_forced_frame_of_one_byte_reports_its_version_or_type(registry: NodeRegistry, data: bytes) -> None:
    dec = FrameDecoder(registry)
    with pytest.raises(FrameError) as err:
        dec.inspect(data, codec=NodeFormat.FRAME)
    assert err.value.reason == "bad_version"


def test_forced_empty_and_one_byte_frames_are_too_short_with_their_own_messages(registry) -> None:
    dec = FrameDecoder(registry)
    with pytest.raises(FrameError) as err:
        dec.inspect(b"", codec=NodeFormat.FRAME)
    assert (err.value.reason, err.value.message) == ("too_short", "empty packet")
    with pytest.raises(FrameError) as err:
        dec.inspect(b"\x00", codec=NodeFormat.FRAME)
    assert err.value.reason == "too_short" and err.value.message.startswith("1 bytes")


def test_a_frame_of_exactly_the_lora_limit_is_accepted(registry: NodeRegistry) -> None:
    registry.add(Node(0x33, "open"))
    dec = FrameDecoder(registry)
    data = _open(0x33, 0, payload=bytes(MAX_FRAME_LEN - 7))
    assert len(data) == MAX_FRAME_LEN
    assert dec.decode(data).payload == bytes(MAX_FRAME_LEN - 7)


def test_a_bare_payload_of_exactly_the_lora_limit_is_accepted(registry: NodeRegistry) -> None:
    registry.add(Node(81, "bare-raw", format=NodeFormat.RAW))
    dec = FrameDecoder(registry)
    data = b"\xc0" + bytes(MAX_FRAME_LEN - 1)
    frame = dec.decode(data)
    assert (frame.node_id, frame.payload, frame.codec) == (81, data, PayloadCodec.RAW)
    with pytest.raises(FrameError) as err:
        dec.decode(data + b"\x00")
    assert err.value.reason in ("bad_payload", "bad_version")


def test_foreign_frames_carry_their_codec_and_no_flags(registry: NodeRegistry) -> None:
    registry.add(Node(80, "bare-lpp", format=NodeFormat.LPP))
    registry.add(Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3))
    dec = FrameDecoder(registry)
    bare = dec.decode(bytes.fromhex("0367010a"))
    assert (bare.codec, bare.ack_requested, bare.encrypted) == (PayloadCodec.LPP, False, False)
    rh = dec.decode(radiohead.build(0xFF, 3, bytes.fromhex("0367010a")))
    assert (rh.ack_requested, rh.encrypted) == (False, False)
    empty = dec.decode(radiohead.build(0xFF, 3, b""))  # header only: exactly HEADER_LEN bytes
    assert (empty.node_id, empty.payload) == (70, b"")


def test_radiohead_not_for_us_names_the_node(registry: NodeRegistry) -> None:
    registry.add(Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3))
    dec = FrameDecoder(registry, DecoderSettings(radiohead_address=1))
    with pytest.raises(FrameError) as err:
        dec.decode(radiohead.build(2, 3, bytes.fromhex("0367010a")))
    assert err.value.reason == "not_for_us" and err.value.message.startswith("node 70:")


def test_hinted_radiohead_checks_the_sender_even_for_a_header_only_packet(registry: NodeRegistry) -> None:
    registry.add(Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3))
    dec = FrameDecoder(registry)
    with pytest.raises(FrameError) as err:
        dec.decode(radiohead.build(0xFF, 9, b""), node_hint=70)
    assert err.value.reason == "unknown_node"
    frame = dec.decode(radiohead.build(0xFF, 3, bytes.fromhex("0367010a"), ident=7), node_hint=70)
    assert frame.node_id == 70


def test_unknown_secured_and_corrupted_frames_keep_their_reason_without_bare_nodes(registry) -> None:
    dec = FrameDecoder(registry)
    assert reason_of(dec, FrameEncoder(0x2A, KEY).encode(b"x")) == "unknown_node"
    corrupted = bytearray(_open(0x33, 0))
    corrupted[-1] ^= 0xFF
    assert reason_of(dec, bytes(corrupted)) == "bad_crc"


def test_a_short_packet_naming_a_frame_node_is_never_taken_as_radiohead(registry: NodeRegistry) -> None:
    """03 07 00 00 AA: too short for a frame of node 0xAA000007, also a RadioHead packet from 7."""
    registry.add(Node(0xAA000007, "frame-node"))
    registry.add(Node(7, "frame-7"))  # what the first 3 id bytes of the 4-byte packet would name
    registry.add(_rh_raw(7))
    dec = FrameDecoder(registry)
    assert reason_of(dec, bytes([0x03, 0x07, 0x00, 0x00, 0xAA])) == "too_short"
    assert dec.decode(bytes([0x03, 0x07, 0x00, 0x00])).node_id == 71  # 4 bytes cannot name it


def test_a_frame_node_with_a_radiohead_address_is_not_a_radiohead_node() -> None:
    dec = FrameDecoder([Node(5, "f", radiohead_address=9)])
    with pytest.raises(FrameError) as err:
        dec.decode(radiohead.build(0xFF, 9, b"\x00\x01"))
    assert err.value.reason == "bad_version"


def test_a_node_at_the_last_key_epoch_decodes(registry: NodeRegistry) -> None:
    dec = FrameDecoder([Node(0x2A, "last", key=KEY, key_epoch=MAX_EPOCH)])
    assert dec.decode(FrameEncoder(0x2A, KEY, key_epoch=MAX_EPOCH).encode(b"x")).node_id == 0x2A


def test_a_frame_of_the_next_key_epoch_past_256_prompts_the_reread(registry: NodeRegistry) -> None:
    registry.add(Node(0x2A, "sealed", key=KEY))
    clock = Clock(100.0)
    dec = FrameDecoder(registry, clock=clock)
    registry.reset_counter(0x2A, 0x0305, new_epoch=True)
    data = FrameEncoder(0x2A, KEY, key_epoch=1).encode(b"x", fcnt=0x0305)
    clock.t += 5.0
    assert dec.decode(data).fcnt == 0x0305  # recognised as the next epoch's: re-read, then accepted


def test_decoder_settings_are_frozen_and_slotted() -> None:
    s = DecoderSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_gap = 3  # type: ignore[misc]
    assert not hasattr(s, "__dict__")


def test_an_open_frame_with_a_two_byte_id_of_an_unregistered_node_is_not_the_bare_nodes(registry) -> None:
    """01 | 0067 | fcnt 0x0110 | raw | 05 03 02 | CRC: also LPP (temperature, digital in, analog in)."""
    registry.add(Node(80, "bare", format=NodeFormat.LPP))
    dec = FrameDecoder(registry)
    msg = bytes([0x01, 0x67, 0x00, 0x10, 0x01, 0x00, 0x05, 0x03, 0x02])
    data = msg + crc16(msg).to_bytes(2, "little")
    from gateway.frames import lpp

    assert len(lpp.decode(data)) == 3
    assert reason_of(dec, data) == "unknown_node"
    assert dec.next_fcnt(80) == 0


def test_a_radiohead_packet_to_64_127_is_not_refused_for_naming_a_frame_node(registry) -> None:
    """TO 0x50 reads as a version-1 frame header naming node 4: the version alone rules the frame out."""
    registry.add(Node(4, "frame-4"))
    registry.add(_rh_raw(4))
    dec = FrameDecoder(registry)
    frame = dec.decode(radiohead.build(0x50, 4, b"\xaa\xbb"))
    assert (frame.node_id, frame.payload) == (71, b"\xaa\xbb")
