"""The on-air frame layer: layout, CRC, AES-CMAC/CTR, counters, Cayenne LPP, RadioHead, node registry.

Entry points: :class:`FrameDecoder` (gateway side), :class:`FrameEncoder` (node side),
:class:`NodeRegistry`. See docs/frame-format.md.
"""

from gateway.frames.decoder import DecoderSettings, FrameDecoder
from gateway.frames.encoder import FrameEncoder
from gateway.frames.errors import FrameError, Reason
from gateway.frames.registry import Node, NodeRegistry, RegistryError
from gateway.frames.types import (
    DecodedFrame,
    Direction,
    FrameType,
    NodeFormat,
    PayloadCodec,
    RadioHeadHeader,
    Reading,
)

__all__ = [
    "DecodedFrame",
    "DecoderSettings",
    "Direction",
    "FrameDecoder",
    "FrameEncoder",
    "FrameError",
    "FrameType",
    "Node",
    "NodeFormat",
    "NodeRegistry",
    "PayloadCodec",
    "RadioHeadHeader",
    "Reading",
    "Reason",
    "RegistryError",
]
