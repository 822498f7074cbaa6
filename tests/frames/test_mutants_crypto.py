"""AES-CTR against an independent keystream at every length: a keystream one block short leaves the
payload's last bytes in clear (17–18, 33–35, … bytes), which a frame round trip cannot notice."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.frames import crypto
from gateway.frames.types import Direction

MIC_KEY = bytes(range(16))
ENC_KEY = bytes(range(100, 116))


def _reference(node_id: int, fcnt: int, data: bytes, direction: Direction = Direction.UP) -> bytes:
    """LoRaWAN's Ai differ only in their last byte (i = 1, 2, …): that is CTR mode started at A1."""
    a1 = bytes([1, 0, 0, 0, 0, int(direction)]) + node_id.to_bytes(4, "little") + fcnt.to_bytes(4, "little")
    enc = Cipher(algorithms.AES(ENC_KEY), modes.CTR(a1 + b"\x00\x01")).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.mark.parametrize("direction", [Direction.UP, Direction.DOWN])
def test_every_length_matches_the_reference_keystream(direction: Direction) -> None:
    nc = crypto.NodeCrypto(MIC_KEY, ENC_KEY, 0x01020304, direction)
    for n in range(256):
        data = bytes((7 * i + n) & 0xFF for i in range(n))
        out = nc.crypt(0x00ABCDEF, data)
        assert out == _reference(0x01020304, 0x00ABCDEF, data, direction), n
        if n:
            assert nc.crypt(0x00ABCDEF, out) == data


def test_no_plaintext_byte_survives_at_block_boundaries() -> None:
    nc = crypto.NodeCrypto(MIC_KEY, ENC_KEY, 7)
    for n in (15, 16, 17, 18, 31, 32, 33, 35, 240, 241, 246, 255):
        zeros = bytes(n)
        assert nc.crypt(1, zeros) == _reference(7, 1, zeros)  # the keystream itself, all of it


def test_mic_known_answer_and_length_in_b0() -> None:
    nc = crypto.NodeCrypto(MIC_KEY, ENC_KEY, 0x2A)
    for n in (0, 1, 15, 16, 17, 255):
        msg = bytes(range(n % 256))[:n]
        b0 = crypto.b0_block(Direction.UP, 0x2A, 9, n)
        assert nc.mic(9, msg) == crypto.aes_cmac(MIC_KEY, b0 + msg)[:4]
        assert nc.verify(9, msg, nc.mic(9, msg))
        assert not nc.verify(10, msg, nc.mic(9, msg))


def test_key_derivation_blocks_and_epoch_range() -> None:
    assert crypto.key_block(1, 0) == b"\x01" + bytes(15)
    assert crypto.key_block(2, 0x01020304) == b"\x02\x04\x03\x02\x01" + bytes(11)
    assert crypto.key_block(1, crypto.MAX_EPOCH)[1:5] == b"\xff\xff\xff\xff"
    for bad in (-1, crypto.MAX_EPOCH + 1):
        with pytest.raises(ValueError):
            crypto.key_block(1, bad)
    root = bytes(range(16))
    ecb = Cipher(algorithms.AES(root), modes.ECB()).encryptor()
    assert crypto.derive_keys(root, 3) == (
        ecb.update(crypto.key_block(1, 3)),
        ecb.update(crypto.key_block(2, 3)),
    )
    with pytest.raises(ValueError):
        crypto.check_key(bytes(15))
    with pytest.raises(ValueError):
        crypto.check_key(bytes(17))
    assert crypto.check_key(bytearray(16)) == bytes(16)


def test_a_and_b0_blocks_layout() -> None:
    assert crypto.a_block(Direction.DOWN, 0x11223344, 0x55667788, 3) == bytes(
        [1, 0, 0, 0, 0, 1, 0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0, 3]
    )
    assert crypto.b0_block(Direction.UP, 5, 6, 7) == bytes(
        [0x49, 0, 0, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 0, 7]
    )
