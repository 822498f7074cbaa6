"""Cayenne LPP: the reference examples, every type both ways, malformed input, range checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames import lpp
from gateway.frames.errors import FrameError
from gateway.frames.types import Reading


def test_reference_examples() -> None:
    assert lpp.decode(bytes.fromhex("03670110056700FF")) == [
        Reading(3, "temperature", 27.2, "°C"),
        Reading(5, "temperature", 25.5, "°C"),
    ]
    assert lpp.decode(bytes.fromhex("0167FFD7")) == [Reading(1, "temperature", -4.1, "°C")]
    assert lpp.decode(bytes.fromhex("007327BF006700DE")) == [
        Reading(0, "barometer", 1017.5, "hPa"),
        Reading(0, "temperature", 22.2, "°C"),
    ]


def test_reference_examples_encode_back() -> None:
    assert lpp.encode([(3, "temperature", 27.2), (5, "temperature", 25.5)]).hex() == "03670110056700ff"
    assert lpp.encode([Reading(1, "temperature", -4.1, "°C")]).hex() == "0167ffd7"


@pytest.mark.parametrize(
    ("hex_", "expected"),
    [
        ("000001", ("digital_input", 1)),
        ("010100", ("digital_output", 0)),
        ("0202FF9C", ("analog_input", -1.0)),
        ("030304D2", ("analog_output", 12.34)),
        ("0464DEADBEEF", ("generic", 0xDEADBEEF)),
        ("05650140", ("illuminance", 320)),
        ("066601", ("presence", 1)),
        ("076879", ("humidity", 60.5)),
        ("08732797", ("barometer", 1013.5)),
        ("0974014B", ("voltage", 3.31)),
        ("0A7504D2", ("current", 1.234)),
        ("0B760DA1B6D8", ("frequency", 228701912)),
        ("0C7864", ("percentage", 100)),
        ("0D79FF38", ("altitude", -200)),
        ("0E8005DC", ("power", 1500)),
        ("0F82000030D4", ("distance", 12.5)),
        ("10830001E240", ("energy", 123.456)),
        ("11840168", ("direction", 360)),
        ("12856553F100", ("unix_time", 1700000000)),
        ("138E01", ("switch", 1)),
    ],
)
def test_every_scalar_type(hex_: str, expected: tuple) -> None:
    (reading,) = lpp.decode(bytes.fromhex(hex_))
    assert (reading.type, reading.value) == expected
    assert lpp.encode_reading(reading.channel, reading.type, reading.value).hex() == hex_.lower()


def test_vector_types() -> None:
    acc = lpp.decode(bytes.fromhex("017104D2FB2E0000"))[0]
    assert acc.value == {"x": 1.234, "y": -1.234, "z": 0.0} and acc.unit == "g"
    gyro = lpp.decode(bytes.fromhex("02860064FF9C2710"))[0]
    assert gyro.value == {"x": 1.0, "y": -1.0, "z": 100.0}
    # GPS: 42.3519 N, 87.9094 W, 10 m (the LPP documentation's example).
    gps = lpp.decode(bytes.fromhex("018806765FF2960A0003E8"))[0]
    assert gps.value == {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}
    assert lpp.encode_reading(1, "gps", gps.value).hex() == "018806765ff2960a0003e8"


@pytest.mark.parametrize(
    ("hex_", "fragment"),
    [("03", "truncated"), ("0367", "truncated"), ("036701", "truncated"), ("0399", "unknown type"),
     ("03670110" "0188" "0000", "truncated")],
)  # fmt: skip
def test_malformed_payloads_are_bad_payload(hex_: str, fragment: str) -> None:
    with pytest.raises(FrameError, match=fragment) as err:
        lpp.decode(bytes.fromhex(hex_))
    assert err.value.reason == "bad_payload"


@pytest.mark.parametrize(
    ("channel", "type_", "value"),
    [(1, "temperature", 3276.8), (1, "humidity", -1), (1, "humidity", 128), (256, "presence", 1),
     (1, "nonsense", 1), (1, "gps", {"latitude": 1.0}), (1, "temperature", "warm"), (1, "switch", True)],
)  # fmt: skip
def test_encode_refuses_instead_of_clamping(channel: int, type_: str, value: object) -> None:
    with pytest.raises(FrameError) as err:
        lpp.encode_reading(channel, type_, value)  # type: ignore[arg-type]
    assert err.value.reason == "bad_payload"


def _raw_reading(kind: lpp.LppType) -> st.SearchStrategy:
    """A reading as raw on-air integers, turned into the value the decoder must report."""
    if kind.fields:
        bits = 8 * kind.field_size
        ints = st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return st.tuples(*(ints for _ in kind.fields))
    bits = 8 * kind.size
    return (
        st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if kind.signed
        else st.integers(0, (1 << bits) - 1)
    )


readings = st.lists(
    st.sampled_from(lpp.TYPES).flatmap(
        lambda kind: st.tuples(st.integers(0, 255), st.just(kind), _raw_reading(kind))
    ),
    max_size=12,
)


@settings(deadline=None)
@given(readings)
def test_round_trip_every_type(items: list) -> None:
    payload = bytearray()
    expected = []
    for channel, kind, raw in items:
        payload += bytes((channel, kind.code))
        if kind.fields:
            value = {}
            for name, r in zip(kind.fields, raw, strict=True):
                payload += r.to_bytes(kind.field_size, "big", signed=True)
                value[name] = r / (lpp.GPS_DIVISORS[name] if kind.code == 0x88 else kind.divisor)
        else:
            payload += raw.to_bytes(kind.size, "big", signed=kind.signed)
            value = raw if kind.divisor == 1 else raw / kind.divisor
        expected.append(Reading(channel, kind.name, value, kind.unit))
    decoded = lpp.decode(bytes(payload))
    assert decoded == expected
    assert lpp.encode(decoded) == bytes(payload)


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    try:
        lpp.decode(data)
    except FrameError as exc:
        assert exc.reason == "bad_payload"
