"""The secured profile's cryptography: LoRaWAN 1.0's MIC (AES-CMAC over B0 | msg) and its AES-CTR
payload encryption (keystream blocks Ai), keyed per node.

One 16-byte root key per node; the MIC key and the encryption key are derived from it (one AES block
each, below) so that CMAC and CTR never share a key, as LoRaWAN's NwkSKey/AppSKey split intends.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.frames.types import Direction

KEY_LEN = 16
MIC_ROLE = 0x01
ENC_ROLE = 0x02
MAX_EPOCH = 0xFFFF_FFFF

_TAIL = struct.Struct("<IBB")  # full counter, 0x00, length (B0) or block index (Ai)


def _ecb(key: bytes):
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def check_key(key: bytes) -> bytes:
    if len(key) != KEY_LEN:
        raise ValueError(f"an AES-128 key has 16 bytes, not {len(key)}")
    return bytes(key)


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-128-CMAC (RFC 4493), the full 16-byte tag."""
    mac = cmac.CMAC(algorithms.AES(check_key(key)))
    mac.update(message)
    return mac.finalize()


def key_block(role: int, epoch: int) -> bytes:
    """``role | epoch (4 bytes LE) | 11 × 00``: epoch 0 gives the original blocks 01 00…00 / 02 00…00."""
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"key epoch {epoch} is outside 0..0xFFFFFFFF")
    return bytes((role,)) + epoch.to_bytes(4, "little") + bytes(11)


def derive_keys(root_key: bytes, epoch: int = 0) -> tuple[bytes, bytes]:
    """(mic_key, enc_key) = (AES(root, 01 | epoch | 0…), AES(root, 02 | epoch | 0…)).

    A new epoch gives new session keys, so after a counter reset the old frames no longer verify and the
    restarted counter never meets an old keystream."""
    enc = _ecb(check_key(root_key))
    return enc.update(key_block(MIC_ROLE, epoch)), enc.update(key_block(ENC_ROLE, epoch))


def b0_block(direction: Direction, node_id: int, fcnt: int, msg_len: int) -> bytes:
    """LoRaWAN 1.0 B0: 0x49, 4 × 0x00, Dir, DevAddr (4 LE), FCnt (4 LE), 0x00, len(msg)."""
    return (
        bytes([0x49, 0, 0, 0, 0, int(direction)])
        + node_id.to_bytes(4, "little")
        + _TAIL.pack(fcnt, 0, msg_len)
    )


def a_block(direction: Direction, node_id: int, fcnt: int, index: int) -> bytes:
    """LoRaWAN 1.0 Ai: 0x01, 4 × 0x00, Dir, DevAddr (4 LE), FCnt (4 LE), 0x00, i (1-based)."""
    return (
        bytes([0x01, 0, 0, 0, 0, int(direction)]) + node_id.to_bytes(4, "little") + _TAIL.pack(fcnt, 0, index)
    )


class NodeCrypto:
    """Cipher objects for one node and direction, built once: per frame the MIC costs one CMAC-context copy
    and the keystream one ECB call. Not thread-safe (one owner thread, like the decoder)."""

    __slots__ = ("_a_prefix", "_b0_prefix", "_ecb", "_mac")

    def __init__(self, mic_key: bytes, enc_key: bytes, node_id: int, direction: Direction = Direction.UP):
        self._mac = cmac.CMAC(algorithms.AES(check_key(mic_key)))
        self._ecb = _ecb(check_key(enc_key))
        ident = bytes([0, 0, 0, 0, int(direction)]) + node_id.to_bytes(4, "little")
        self._b0_prefix = b"\x49" + ident
        self._a_prefix = b"\x01" + ident

    @classmethod
    def from_root(
        cls, root_key: bytes, node_id: int, direction: Direction = Direction.UP, epoch: int = 0
    ) -> NodeCrypto:
        mic_key, enc_key = derive_keys(root_key, epoch)
        return cls(mic_key, enc_key, node_id, direction)

    def mic(self, fcnt: int, msg: bytes, bound: bytes = b"") -> bytes:
        """First 4 bytes of AES-CMAC(mic_key, B0 | bound | msg); ``msg`` already encrypted, at most 255
        bytes. ``bound``: a learned-model frame's model fingerprint (implicit associated data, never
        sent); B0's length byte stays len(msg)."""
        mac = self._mac.copy()
        mac.update(self._b0_prefix + _TAIL.pack(fcnt, 0, len(msg)) + bound)
        mac.update(msg)
        return mac.finalize()[:4]

    def verify(self, fcnt: int, msg: bytes, mic: bytes, bound: bytes = b"") -> bool:
        return hmac.compare_digest(self.mic(fcnt, msg, bound), mic)

    def crypt(self, fcnt: int, data: bytes) -> bytes:
        """XOR ``data`` with the keystream AES(enc_key, A1) | AES(enc_key, A2) | …; encrypts and decrypts."""
        n = len(data)
        if n == 0:
            return b""
        prefix = self._a_prefix
        if n <= 16:
            stream = self._ecb.update(prefix + _TAIL.pack(fcnt, 0, 1))
        else:
            stream = self._ecb.update(
                b"".join(prefix + _TAIL.pack(fcnt, 0, i) for i in range(1, (n + 15) // 16 + 1))
            )
        return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")).to_bytes(n, "little")
