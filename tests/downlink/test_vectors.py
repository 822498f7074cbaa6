"""The downlink test vectors of docs/frame-format.md ("Downlink test vectors")."""

from __future__ import annotations

import pytest

from gateway.frames import FrameType
from gateway.frames.crypto import aes_cmac, derive_keys
from gateway.frames.downlink import DownlinkDecoder, DownlinkEncoder

K = bytes(range(16))


@pytest.mark.parametrize(
    ("node", "key", "fcnt", "kind", "acked", "command", "confirm", "hexframe"),
    [
        (0x2A, K, 0, FrameType.ACK, 2, b"", False, "18 2a 0000 00 2e66 09213038"),
        (0x2A, K, 1, FrameType.COMMAND, None, b"\x01\x1e\x00", True, "2c 2a 0100 00 807d2e 1a2a9ca9"),
        (5, None, 0, FrameType.ACK, 0, b"", False, "10 05 0000 00 0000 b485"),
    ],
)
def test_vector(node, key, fcnt, kind, acked, command, confirm, hexframe):
    frame = bytes.fromhex(hexframe.replace(" ", ""))
    enc = DownlinkEncoder(node, key)
    made = (
        enc.ack(fcnt, acked, command, confirm)
        if kind is FrameType.ACK
        else enc.command(fcnt, command, confirm)
    )
    assert made == frame
    down = DownlinkDecoder(node, key, next_fcnt=fcnt).decode(frame)
    assert (down.frame_type, down.fcnt, down.acked_fcnt, down.command, down.confirm) == (
        kind,
        fcnt,
        acked,
        command,
        confirm,
    )


def test_secured_vector_mic_is_dir_1_b0():
    """The MIC of vector 13 by hand: B0 with Dir = 1, independent of the encoder."""
    mic_key, _ = derive_keys(K)
    frame = bytes.fromhex("182a000000" + "2e66" + "09213038")
    msg = frame[:-4]
    b0 = (
        bytes([0x49, 0, 0, 0, 0, 1])
        + (0x2A).to_bytes(4, "little")
        + (0).to_bytes(4, "little")
        + bytes([0, len(msg)])
    )
    assert aes_cmac(mic_key, b0 + msg)[:4] == frame[-4:]
