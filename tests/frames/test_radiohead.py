"""The RH_RF95 header: fields, flags, broadcast, limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames import radiohead
from gateway.frames.errors import FrameError


def test_parse_fields_and_flags() -> None:
    hdr, data = radiohead.parse(bytes.fromhex("ff0307c0") + b"\x01\x67\xff\xd7")
    assert (hdr.to, hdr.sender, hdr.id, hdr.flags) == (0xFF, 3, 7, 0xC0)
    assert hdr.broadcast and hdr.ack and hdr.retry
    assert data == bytes.fromhex("0167ffd7")
    hdr, data = radiohead.parse(bytes.fromhex("01020300"))
    assert not (hdr.broadcast or hdr.ack or hdr.retry) and data == b""


def test_too_short_and_too_long() -> None:
    with pytest.raises(FrameError) as err:
        radiohead.parse(b"\xff\x01\x02")
    assert err.value.reason == "too_short"
    with pytest.raises(FrameError) as err:
        radiohead.parse(bytes(256))
    assert err.value.reason == "bad_payload"


@settings(deadline=None)
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=251),
)
def test_build_parse_round_trip(to: int, sender: int, ident: int, flags: int, data: bytes) -> None:
    hdr, body = radiohead.parse(radiohead.build(to, sender, data, ident, flags))
    assert (hdr.to, hdr.sender, hdr.id, hdr.flags, body) == (to, sender, ident, flags, data)


def test_build_validates() -> None:
    with pytest.raises(ValueError):
        radiohead.build(256, 1, b"")
    with pytest.raises(ValueError):
        radiohead.build(1, 1, bytes(252))
