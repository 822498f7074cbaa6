"""RadioHead RH_RF95 packets: TO, FROM, ID, FLAGS, then up to 251 data bytes (RH_RF95_MAX_MESSAGE_LEN).

FLAGS high nibble is RadioHead's own (0x80 ACK, 0x40 RETRY); 0xFF in TO is broadcast. An ACK's data is
``b"!"``. RH_RF95 runs with the radio's CRC on, so the header carries no check of its own.
"""

from __future__ import annotations

from gateway.frames.errors import FrameError, Reason
from gateway.frames.types import RadioHeadHeader

HEADER_LEN = 4
MAX_DATA_LEN = 251
BROADCAST = 0xFF
FLAG_ACK = 0x80
FLAG_RETRY = 0x40
ACK_DATA = b"!"


def parse(packet: bytes) -> tuple[RadioHeadHeader, bytes]:
    """(header, data); fewer than 4 bytes is ``too_short``, more than 255 ``bad_payload``."""
    if len(packet) < HEADER_LEN:
        raise FrameError(Reason.TOO_SHORT, f"RadioHead: {len(packet)} bytes, the header alone has 4")
    if len(packet) > HEADER_LEN + MAX_DATA_LEN:
        raise FrameError(Reason.BAD_PAYLOAD, f"RadioHead: {len(packet)} bytes exceed 255")
    return RadioHeadHeader(packet[0], packet[1], packet[2], packet[3]), bytes(packet[HEADER_LEN:])


def build(to: int, sender: int, data: bytes, ident: int = 0, flags: int = 0) -> bytes:
    """A packet as RH_RF95::send() puts it on the air (for tests and simulated nodes)."""
    for name, value in (("to", to), ("from", sender), ("id", ident), ("flags", flags)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"RadioHead {name} {value} is outside 0..255")
    if len(data) > MAX_DATA_LEN:
        raise ValueError(f"RadioHead data of {len(data)} bytes exceeds {MAX_DATA_LEN}")
    return bytes((to, sender, ident, flags)) + bytes(data)
