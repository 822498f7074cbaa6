"""FrameDecoder against a real SQLite registry: round trips, every rejection reason, counters,
tampering, classification of foreign formats, and robustness against any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.frames import (
    DecoderSettings,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    FrameType,
    Node,
    NodeFormat,
    PayloadCodec,
    Reading,
    radiohead,
)
from gateway.frames.lpp import encode as lpp_encode
from tests.frames.conftest import KEY, OTHER_KEY

WEATHER = [(1, "temperature", 21.5), (2, "humidity", 60.5), (3, "barometer", 1013.2)]


def reason_of(decoder: FrameDecoder, data: bytes, **kw) -> str:
    with pytest.raises(FrameError) as err:
        decoder.decode(data, **kw)
    assert "\n" not in err.value.message
    return err.value.reason


class TestRoundTrip:
    def test_open_lpp(self, decoder: FrameDecoder) -> None:
        frame = decoder.decode(FrameEncoder(5).encode_lpp(WEATHER))
        assert (frame.node_id, frame.node_name, frame.fcnt, frame.next_fcnt) == (5, "open-5", 0, 1)
        assert frame.codec is PayloadCodec.LPP and not frame.encrypted and frame.format is NodeFormat.FRAME
        assert frame.values == [
            Reading(1, "temperature", 21.5, "°C"),
            Reading(2, "humidity", 60.5, "%"),
            Reading(3, "barometer", 1013.2, "hPa"),
        ]

    def test_secured_model_payload(self, decoder: FrameDecoder, registry) -> None:
        registry.reset_counter(0x01020304, 70000)
        decoder.reload()
        enc = FrameEncoder(0x01020304, KEY, next_fcnt=70000)
        fp = bytes(range(8))
        data = enc.encode(
            b"\x01\x02\x03", codec=PayloadCodec.MODEL, model_id=7, model_version=12, fingerprint=fp
        )
        assert b"\x01\x02\x03" not in data
        decoder = FrameDecoder(registry, models=lambda mid, v8: [(12, fp)] if (mid, v8) == (7, 4) else [])
        frame = decoder.decode(data)
        assert frame.encrypted and frame.payload == b"\x01\x02\x03" and frame.values is None
        # The frame carries the full version whose fingerprint its MIC verified under.
        assert (frame.codec, frame.model_id, frame.model_version) == (PayloadCodec.MODEL, 7, 12)
        assert (frame.fcnt, frame.next_fcnt) == (70000, 70001)

    def test_raw_ack_and_command_types(self, decoder: FrameDecoder) -> None:
        enc = FrameEncoder(0x2A, OTHER_KEY)
        ack = decoder.decode(enc.encode(b"", frame_type=FrameType.ACK))
        assert (
            ack.frame_type is FrameType.ACK
            and ack.payload == b""
            and ack.values == [Reading(0, "raw", "", None)]
        )
        cmd = decoder.decode(enc.encode(b"\xab", frame_type=FrameType.COMMAND, ack_requested=True))
        assert cmd.frame_type is FrameType.COMMAND and cmd.ack_requested and cmd.values[0].value == "ab"

    @settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        node_id=st.integers(0, 2**32 - 1),
        fcnt=st.integers(0, 2**32 - 1),
        payload=st.binary(max_size=200),
        secured=st.booleans(),
        frame_type=st.sampled_from([FrameType.TELEMETRY, FrameType.ACK, FrameType.COMMAND]),
        ack=st.booleans(),
    )
    def test_any_frame_round_trips(self, node_id, fcnt, payload, secured, frame_type, ack) -> None:
        key = bytes([node_id & 0xFF]) * 16 if secured else None
        decoder = FrameDecoder([Node(node_id, "n", key=key, next_fcnt=fcnt)])
        data = FrameEncoder(node_id, key).encode(payload, frame_type=frame_type, ack_requested=ack, fcnt=fcnt)
        frame = decoder.decode(data)
        assert (frame.node_id, frame.fcnt, frame.payload, frame.frame_type) == (
            node_id,
            fcnt,
            payload,
            frame_type,
        )
        assert frame.ack_requested == ack and frame.encrypted == secured
        overhead = len(data) - len(payload)
        assert overhead <= (12 if secured else 10)
        if node_id < 0x10000:
            assert overhead <= (10 if secured else 8)


class TestRejections:
    def test_too_short(self, decoder: FrameDecoder) -> None:
        assert reason_of(decoder, b"") == "too_short"
        assert reason_of(decoder, bytes.fromhex("0005")) == "too_short"
        assert reason_of(decoder, FrameEncoder(0x01020304, KEY).encode(b"")[:-1]) == "too_short"

    def test_bad_version_and_reserved_type(self, decoder: FrameDecoder) -> None:
        good = FrameEncoder(5).encode(b"x")
        assert reason_of(decoder, bytes([good[0] | 0x40]) + good[1:]) == "bad_version"
        assert reason_of(decoder, bytes([good[0] | 0x30]) + good[1:]) == "bad_version"

    def test_bad_crc(self, decoder: FrameDecoder) -> None:
        good = FrameEncoder(5).encode_lpp(WEATHER)
        assert reason_of(decoder, good[:-1] + bytes([good[-1] ^ 1])) == "bad_crc"
        assert reason_of(decoder, good[:6] + bytes([good[6] ^ 0x80]) + good[7:]) == "bad_crc"

    def test_bad_mic(self, decoder: FrameDecoder) -> None:
        good = FrameEncoder(0x01020304, KEY).encode(b"payload")
        assert reason_of(decoder, good[:-1] + bytes([good[-1] ^ 1])) == "bad_mic"
        wrong_key = FrameEncoder(0x01020304, OTHER_KEY).encode(b"payload")
        assert reason_of(decoder, wrong_key) == "bad_mic"

    def test_downgrade_and_keyless_encryption_are_bad_mic(self, decoder: FrameDecoder) -> None:
        assert reason_of(decoder, FrameEncoder(0x01020304).encode(b"open")) == "bad_mic"
        assert reason_of(decoder, FrameEncoder(5, KEY).encode(b"sealed")) == "bad_mic"

    def test_unknown_node(self, decoder: FrameDecoder) -> None:
        assert reason_of(decoder, FrameEncoder(6).encode(b"x")) == "unknown_node"
        assert reason_of(decoder, FrameEncoder(0xBEEF, KEY).encode(b"x")) == "unknown_node"
        assert reason_of(decoder, FrameEncoder(70).encode(b"x")) == "unknown_node"  # registered as radiohead

    def test_replay_and_duplicate(self, decoder: FrameDecoder) -> None:
        enc = FrameEncoder(0x01020304, KEY)
        frames = [enc.encode(b"%d" % i) for i in range(4)]
        for data in frames:
            decoder.accept(decoder.decode(data))
        assert reason_of(decoder, frames[3]) == "duplicate"
        assert reason_of(decoder, frames[1]) == "replay"
        assert reason_of(decoder, frames[0]) == "replay"
        assert decoder.decode(enc.encode(b"next")).fcnt == 4

    def test_open_replay(self, decoder: FrameDecoder) -> None:
        enc = FrameEncoder(5)
        first, second = enc.encode(b"a"), enc.encode(b"b")
        decoder.accept(decoder.decode(first))
        decoder.accept(decoder.decode(second))
        assert reason_of(decoder, second) == "duplicate"
        assert reason_of(decoder, first) == "replay"

    def test_counter_gap(self, decoder: FrameDecoder) -> None:
        assert (
            reason_of(decoder, FrameEncoder(0x01020304, KEY, next_fcnt=16385).encode(b"x")) == "counter_gap"
        )
        assert decoder.decode(FrameEncoder(0x01020304, KEY, next_fcnt=16384).encode(b"x")).fcnt == 16384
        strict = FrameDecoder([Node(5, "n")], DecoderSettings(max_gap=3))
        assert reason_of(strict, FrameEncoder(5, next_fcnt=4).encode(b"x")) == "counter_gap"
        assert strict.decode(FrameEncoder(5, next_fcnt=3).encode(b"x")).fcnt == 3

    def test_forged_old_counter_is_bad_mic_not_replay(self, decoder: FrameDecoder) -> None:
        enc = FrameEncoder(0x01020304, KEY, next_fcnt=100)
        decoder.accept(decoder.decode(enc.encode(b"x")))
        forged = FrameEncoder(0x01020304, OTHER_KEY, next_fcnt=50).encode(b"x")
        assert reason_of(decoder, forged) == "bad_mic"

    def test_unknown_codec(self, decoder: FrameDecoder) -> None:
        from gateway.frames.wire import crc16

        body = bytes.fromhex("00050000") + b"\x03payload"
        assert reason_of(decoder, body + crc16(body).to_bytes(2, "little")) == "unknown_codec"

    def test_bad_payload(self, decoder: FrameDecoder) -> None:
        data = FrameEncoder(0x01020304, KEY).encode(b"\x01\x67\x00", codec=PayloadCodec.LPP)
        assert reason_of(decoder, data) == "bad_payload"
        assert decoder.next_fcnt(0x01020304) == 0  # nothing moved

    def test_not_for_us(self, mixed_nodes) -> None:
        decoder = FrameDecoder(mixed_nodes, DecoderSettings(radiohead_address=1))
        assert reason_of(decoder, radiohead.build(2, 3, lpp_encode(WEATHER))) == "not_for_us"
        assert decoder.decode(radiohead.build(1, 3, lpp_encode(WEATHER))).node_id == 70
        assert decoder.decode(radiohead.build(0xFF, 3, lpp_encode(WEATHER))).node_id == 70


class TestCounters:
    def test_decode_does_not_change_state(self, decoder: FrameDecoder) -> None:
        data = FrameEncoder(0x01020304, KEY).encode(b"x")
        assert decoder.decode(data).fcnt == decoder.decode(data).fcnt == 0
        assert decoder.next_fcnt(0x01020304) == 0

    def test_rollover_across_16_bits(self, decoder: FrameDecoder, registry) -> None:
        registry.reset_counter(0x01020304, 0xFFFD)
        decoder.reload()
        enc = FrameEncoder(0x01020304, KEY, next_fcnt=0xFFFD)
        seen = []
        for _ in range(6):
            frame = decoder.decode(enc.encode(b"t"))
            decoder.accept(frame)
            seen.append(frame.fcnt)
        assert seen == list(range(0xFFFD, 0x10003))
        # Frames lost on air across the wrap: 0x10003 … 0x10100 skipped.
        assert decoder.decode(enc.encode(b"t", fcnt=0x10101)).fcnt == 0x10101

    def test_rollover_near_the_32_bit_end(self) -> None:
        decoder = FrameDecoder([Node(9, "n", key=KEY, next_fcnt=0xFFFF_FFFF)])
        last = FrameEncoder(9, KEY, next_fcnt=0xFFFF_FFFF).encode(b"x")
        frame = decoder.decode(last)
        assert frame.fcnt == 0xFFFF_FFFF
        decoder.accept(frame)
        assert reason_of(decoder, last) == "duplicate"
        # The next counter would be 2^32: never accepted (the keystream would repeat).
        wrapped = FrameEncoder(9, KEY).encode(b"x", fcnt=0)
        with pytest.raises(FrameError, match="exhausted") as err:
            decoder.decode(wrapped)
        assert err.value.reason == "replay"

    def test_accept_ignores_frames_from_before_a_reset(self, decoder: FrameDecoder, registry) -> None:
        enc = FrameEncoder(0x01020304, KEY, next_fcnt=500)
        frame = decoder.decode(enc.encode(b"x"))
        registry.reset_counter(0x01020304, 0)
        decoder.reload()
        decoder.accept(frame)  # decoded under the old epoch: must not undo the reset
        assert decoder.next_fcnt(0x01020304) == 0

    def test_reload_keeps_memory_ahead_of_the_database(self, decoder: FrameDecoder) -> None:
        enc = FrameEncoder(5)
        for _ in range(3):
            decoder.accept(decoder.decode(enc.encode(b"x")))
        decoder.reload()  # the database still says 0 (the outbox has not committed yet)
        assert decoder.next_fcnt(5) == 3

    def test_reset_counter_is_picked_up_on_rejection(self, registry, mixed_nodes) -> None:
        now = [0.0]
        for node in mixed_nodes:
            registry.add(node)
        decoder = FrameDecoder(registry, clock=lambda: now[0])
        old = FrameEncoder(5, next_fcnt=1000)
        decoder.accept(decoder.decode(old.encode(b"x")))
        rebooted = FrameEncoder(5)  # the node lost its counter
        assert reason_of(decoder, rebooted.encode(b"x", fcnt=0)) == "replay"
        registry.reset_counter(5, 0)
        assert reason_of(decoder, rebooted.encode(b"x", fcnt=0)) == "replay"  # re-read at most once a second
        now[0] = 2.0
        assert decoder.decode(rebooted.encode(b"x", fcnt=0)).fcnt == 0

    def test_new_node_is_found_without_restart(self, registry) -> None:
        now = [0.0]
        decoder = FrameDecoder(registry, clock=lambda: now[0])
        data = FrameEncoder(0x77).encode(b"x")
        assert reason_of(decoder, data) == "unknown_node"
        registry.add(Node(0x77, "late"))
        now[0] = 1.5
        assert decoder.decode(data).node_name == "late"


def _flips(data: bytes):
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        yield bytes(flipped)


class TestTampering:
    @pytest.mark.parametrize("node_id", [0x2A, 0x1234, 0x01020304])
    def test_every_single_bit_flip_of_a_secured_frame_is_rejected(self, registry, node_id: int) -> None:
        for nid in (0x2A, 0x1234, 0x01020304):
            registry.add(Node(nid, f"sec-{nid}", key=bytes([nid & 0xFF]) * 16))
        decoder = FrameDecoder(registry)
        enc = FrameEncoder(node_id, bytes([node_id & 0xFF]) * 16, next_fcnt=1000)
        registry.reset_counter(node_id, 1000)
        decoder.reload()
        decoder.accept(decoder.decode(enc.encode(b"warmup")))
        data = enc.encode_lpp(WEATHER, ack_requested=True)
        assert decoder.decode(data).fcnt == 1001
        reasons = {reason_of(decoder, flipped) for flipped in _flips(data)}
        # A flip that sets the codec byte's model bit names a model that is not installed.
        assert reasons <= {"bad_mic", "bad_crc", "bad_version", "unknown_node", "too_short", "unknown_model"}
        assert "bad_mic" in reasons

    def test_flipped_secured_frames_are_never_accepted_as_their_node(self, decoder: FrameDecoder) -> None:
        """Beside unauthenticated formats (RadioHead, a bare node) a flipped frame may be read as theirs,
        since those formats accept any bytes their parser does; it never passes as the secured node."""
        data = FrameEncoder(0x01020304, KEY).encode_lpp(WEATHER)
        for flipped in _flips(data):
            try:
                frame = decoder.decode(flipped)
            except FrameError:
                continue
            assert frame.node_id != 0x01020304 and frame.format is not NodeFormat.FRAME


class TestClassification:
    def test_radiohead_lpp_raw_ack_and_retry(self, decoder: FrameDecoder) -> None:
        pkt = radiohead.build(0xFF, 3, bytes.fromhex("0167ffd7"), ident=7)
        frame = decoder.decode(pkt)
        assert frame.format is NodeFormat.RADIOHEAD and frame.codec is PayloadCodec.RADIOHEAD
        assert frame.radiohead.sender == 3 and frame.values == [Reading(1, "temperature", -4.1, "°C")]
        decoder.accept(frame)
        assert decoder.decode(pkt).fcnt == 1  # plain resend without RETRY: RadioHead's own ids may repeat
        retry = radiohead.build(0xFF, 3, bytes.fromhex("0167ffd7"), ident=7, flags=radiohead.FLAG_RETRY)
        assert reason_of(decoder, retry) == "duplicate"
        raw = decoder.decode(radiohead.build(1, 4, b"\x00\xff"))
        assert raw.node_id == 71 and raw.values == [Reading(0, "raw", "00ff", None)]
        ack = decoder.decode(radiohead.build(1, 3, radiohead.ACK_DATA, ident=7, flags=radiohead.FLAG_ACK))
        assert ack.frame_type is FrameType.ACK and ack.values == []
        assert reason_of(decoder, radiohead.build(1, 3, b"\x01\x67")) == "bad_payload"

    def test_single_bare_node_gets_bare_payloads(self, decoder: FrameDecoder) -> None:
        frame = decoder.decode(bytes.fromhex("03670110056700FF"))
        assert frame.node_id == 80 and frame.format is NodeFormat.LPP
        assert [r.value for r in frame.values] == [27.2, 25.5]
        decoder.accept(frame)
        assert decoder.decode(bytes.fromhex("0167FFD7")).fcnt == 1  # the gateway's receive sequence

    def test_corrupted_frame_reports_its_own_reason(self, decoder: FrameDecoder) -> None:
        good = FrameEncoder(5).encode(b"\x99\x99")
        assert reason_of(decoder, good[:-1] + bytes([good[-1] ^ 4])) == "bad_crc"

    def test_two_bare_nodes_cannot_be_told_apart(self, mixed_nodes) -> None:
        decoder = FrameDecoder([*mixed_nodes, Node(81, "bare-raw", format=NodeFormat.RAW)])
        assert reason_of(decoder, bytes.fromhex("03670110056700FF")) == "unknown_node"
        assert decoder.decode(bytes.fromhex("03670110056700FF"), node_hint=80).node_id == 80
        assert decoder.decode(bytes.fromhex("03670110"), node_hint=81).values[0].value == "03670110"

    def test_hint_must_match(self, decoder: FrameDecoder) -> None:
        assert reason_of(decoder, FrameEncoder(5).encode(b"x"), node_hint=0x1234) == "unknown_node"
        assert reason_of(decoder, radiohead.build(1, 4, b"x"), node_hint=70) == "unknown_node"
        assert reason_of(decoder, b"x", node_hint=999) == "unknown_node"

    def test_frame_wins_over_radiohead_address_collision(self, mixed_nodes) -> None:
        # Node 0x0305's frame has byte 1 == 0x05 … use a registered RH address in byte 1 instead.
        decoder = FrameDecoder([*mixed_nodes, Node(0x0403, "open-0403")])
        data = FrameEncoder(0x0403).encode(b"x")
        assert data[1] == 3  # looks like RadioHead FROM 3
        assert decoder.decode(data).node_id == 0x0403


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=80), hint=st.sampled_from([None, 5, 0x01020304, 70, 80, 12345]))
def test_any_input_gives_a_frame_or_a_frame_error(mixed_nodes, data: bytes, hint) -> None:
    decoder = FrameDecoder(mixed_nodes, models=lambda mid, v8: [(v8 + 8, bytes(8))] if mid % 2 else [])
    try:
        decoder.decode(data, node_hint=hint)
    except FrameError as exc:
        assert exc.reason in {
            "too_short", "bad_version", "bad_crc", "bad_mic", "unknown_node", "replay",
            "duplicate", "counter_gap", "unknown_codec", "bad_payload", "not_for_us",
            "model_mismatch", "unknown_model",
        }  # fmt: skip


def test_registry_failure_during_a_reread_keeps_the_decoder_running(registry, caplog) -> None:
    registry.add(Node(5, "open-5"))
    now = [0.0]
    decoder = FrameDecoder(registry, clock=lambda: now[0])
    registry.close()  # the database goes away under the running decoder
    now[0] = 5.0
    assert reason_of(decoder, FrameEncoder(6).encode(b"x")) == "unknown_node"
    assert "re-read failed" in caplog.text
    assert decoder.decode(FrameEncoder(5).encode(b"x")).node_id == 5


def test_non_minimal_node_id_length_is_accepted_in_open_frames() -> None:
    from gateway.frames.wire import crc16

    body = bytes([0x01, 0x05, 0x00, 0x00, 0x00, 0x00]) + b"hi"  # node 5 written in 2 bytes
    frame = FrameDecoder([Node(5, "n")]).decode(body + crc16(body).to_bytes(2, "little"))
    assert (frame.node_id, frame.payload) == (5, b"hi")


def test_direction_is_bound_into_the_mic() -> None:
    from gateway.frames import Direction

    down = FrameEncoder(9, KEY, direction=Direction.DOWN).encode(b"command", frame_type=FrameType.COMMAND)
    node_side = FrameDecoder([Node(9, "gw", key=KEY)], DecoderSettings(direction=Direction.DOWN))
    assert node_side.decode(down).payload == b"command"
    assert reason_of(FrameDecoder([Node(9, "n", key=KEY)]), down) == "bad_mic"


class TestMicJudgedFirst:
    """docs/frame-format.md rule 4: a frame that does not verify is ``bad_mic`` whatever its counter, and an
    unauthenticated frame neither moves a counter nor prompts a registry re-read."""

    @staticmethod
    def _garbled(frame: bytes) -> bytes:
        return frame[:-4] + bytes(b ^ 0xFF for b in frame[-4:])

    @staticmethod
    def _counting(registry, monkeypatch) -> list[int]:
        calls: list[int] = []
        real = registry.nodes
        monkeypatch.setattr(registry, "nodes", lambda: calls.append(1) or real())
        return calls

    @pytest.mark.parametrize("fcnt", [0, 1, 0x1234, 0xFFFE])
    def test_exhausted_counter_with_a_garbage_mic_is_bad_mic(self, fcnt: int) -> None:
        decoder = FrameDecoder([Node(9, "n", key=KEY, next_fcnt=2**32)])
        forged = self._garbled(FrameEncoder(9, KEY).encode(b"x", fcnt=fcnt))
        with pytest.raises(FrameError) as err:
            decoder.decode(forged)
        assert err.value.reason == "bad_mic", err.value.message
        assert decoder.next_fcnt(9) == 2**32

    def test_exhausted_counter_with_a_valid_mic_is_still_replay(self) -> None:
        decoder = FrameDecoder([Node(9, "n", key=KEY, next_fcnt=2**32)])
        for fcnt in (0, 0x1234, 0xFFFE):  # new-looking (within the gap) and far ahead: both exhausted
            with pytest.raises(FrameError, match="exhausted") as err:
                decoder.decode(FrameEncoder(9, KEY).encode(b"x", fcnt=fcnt))
            assert err.value.reason == "replay"
        assert reason_of(decoder, FrameEncoder(9, KEY).encode(b"x", fcnt=0xFFFF_FFFF)) == "duplicate"

    def test_exhausted_bad_mic_triggers_no_registry_reload(self, registry, monkeypatch) -> None:
        now = [0.0]
        registry.add(Node(9, "n", key=KEY, next_fcnt=0xFFFF_FFFF))
        decoder = FrameDecoder(registry, clock=lambda: now[0])
        decoder.accept(decoder.decode(FrameEncoder(9, KEY).encode(b"x", fcnt=0xFFFF_FFFF)))  # next = 2^32
        calls = self._counting(registry, monkeypatch)
        for i in range(3):
            now[0] += 5.0  # a re-read would be due every time
            assert reason_of(decoder, self._garbled(FrameEncoder(9, KEY).encode(b"x", fcnt=i))) == "bad_mic"
        assert calls == []
        now[0] += 5.0  # control: an authentic exhausted frame is a replay, and replays do re-read
        assert reason_of(decoder, FrameEncoder(9, KEY).encode(b"x", fcnt=7)) == "replay"
        assert calls == [1]

    @pytest.mark.parametrize("fcnt", [1001, 1000, 999, 1000 + 20000, 1000 + 0x10000 - 20000])
    def test_bad_mic_from_a_known_secured_node_moves_nothing(self, registry, monkeypatch, fcnt: int) -> None:
        """New, duplicate, replayed, gap-ahead and old-by-2^16 counters, each with a broken MIC."""
        now = [0.0]
        registry.add(Node(0x2A, "sec", key=OTHER_KEY))
        registry.reset_counter(0x2A, 1000)
        decoder = FrameDecoder(registry, clock=lambda: now[0])
        enc = FrameEncoder(0x2A, OTHER_KEY, next_fcnt=1000)
        decoder.accept(decoder.decode(enc.encode(b"ok")))  # next = 1001
        calls = self._counting(registry, monkeypatch)
        now[0] += 5.0
        assert reason_of(decoder, self._garbled(enc.encode(b"x", fcnt=fcnt))) == "bad_mic"
        assert calls == [] and decoder.next_fcnt(0x2A) == 1001 and registry.get(0x2A).next_fcnt == 1000
        # A bad MIC never reaches the service's accept(): the genuine next frame is still new.
        assert decoder.decode(FrameEncoder(0x2A, OTHER_KEY, next_fcnt=1001).encode(b"y")).fcnt == 1001
