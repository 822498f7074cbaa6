"""AES-CMAC against RFC 4493, the LoRaWAN 1.0 MIC/encryption vector, the key derivation and keystream."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames.crypto import NodeCrypto, a_block, aes_cmac, b0_block, derive_keys
from gateway.frames.types import Direction

RFC_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC_MSG = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
LORAWAN = bytes.fromhex("400403020180010001a694642615d6c3b582")


@pytest.mark.parametrize(
    ("length", "tag"),
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_rfc4493_cmac_vectors(length: int, tag: str) -> None:
    assert aes_cmac(RFC_KEY, RFC_MSG[:length]).hex() == tag


def test_lorawan_1_0_uplink_vector() -> None:
    node_id, fcnt = 0x01020304, 1
    msg, mic = LORAWAN[:-4], LORAWAN[-4:]
    assert b0_block(Direction.UP, node_id, fcnt, len(msg)).hex() == "4900000000000403020101000000000e"
    assert a_block(Direction.UP, node_id, fcnt, 1).hex() == "01000000000004030201010000000001"
    crypto = NodeCrypto(mic_key=bytes([2]) * 16, enc_key=bytes([1]) * 16, node_id=node_id)
    assert crypto.mic(fcnt, msg) == mic
    assert crypto.verify(fcnt, msg, mic)
    assert not crypto.verify(fcnt + 1, msg, mic)  # the counter is bound into B0
    assert crypto.crypt(fcnt, LORAWAN[9:-4]) == b"hello"


def test_mic_matches_cmac_over_b0_and_message() -> None:
    crypto = NodeCrypto(bytes([7]) * 16, bytes([9]) * 16, 0xDEADBEEF, Direction.DOWN)
    msg = bytes(range(40))
    expected = aes_cmac(bytes([7]) * 16, b0_block(Direction.DOWN, 0xDEADBEEF, 70000, 40) + msg)[:4]
    assert crypto.mic(70000, msg) == expected


def test_derived_keys_are_distinct_aes_blocks_of_the_root() -> None:
    root = bytes(range(16))
    mic_key, enc_key = derive_keys(root)
    ecb = Cipher(algorithms.AES(root), modes.ECB()).encryptor()
    assert mic_key == ecb.update(b"\x01" + bytes(15))
    assert enc_key == ecb.update(b"\x02" + bytes(15))
    assert mic_key != enc_key
    assert mic_key.hex() == "e37cd363dd7c87a09aff0e3e60e09c82"  # docs/frame-format.md
    with pytest.raises(ValueError, match="16 bytes"):
        derive_keys(b"short")


@settings(deadline=None)
@given(payload=st.binary(max_size=240), fcnt=st.integers(0, 0xFFFFFFFF), node_id=st.integers(0, 0xFFFFFFFF))
def test_keystream_is_aes_of_the_ai_blocks(payload: bytes, fcnt: int, node_id: int) -> None:
    enc_key = bytes([0x42]) * 16
    crypto = NodeCrypto(bytes(16), enc_key, node_id)
    ecb = Cipher(algorithms.AES(enc_key), modes.ECB()).encryptor()
    blocks = b"".join(a_block(Direction.UP, node_id, fcnt, i) for i in range(1, len(payload) // 16 + 2))
    stream = ecb.update(blocks)
    expected = bytes(p ^ s for p, s in zip(payload, stream, strict=False))
    assert crypto.crypt(fcnt, payload) == expected
    assert crypto.crypt(fcnt, expected) == payload
