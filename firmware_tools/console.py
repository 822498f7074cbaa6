"""``lora-fw console``: a node's debug output, with every hex frame dump decoded by the gateway's decoder.

Lines pass through unchanged; a line holding a frame in hex (contiguous, or bytes separated by spaces,
colons or commas, at least 7 bytes: the smallest frame) gets the decoding (node, counter, values) or the
reason the gateway would reject it appended after `` => ``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TextIO

from gateway.errors import GatewayError
from gateway.frames import FrameDecoder
from gateway.frames.types import DecodedFrame, PayloadCodec
from gateway.pipeline.models import InstalledModels

log = logging.getLogger(__name__)

MIN_FRAME = 7
_BYTE = "[0-9A-Fa-f]{2}"
_HEX = re.compile(
    rf"(?<![0-9A-Fa-f])(?:0x)?((?:{_BYTE}){{{MIN_FRAME},255}}|{_BYTE}(?:[ :,]{_BYTE}){{{MIN_FRAME - 1},254}})"
    r"(?![0-9A-Fa-f])"
)


def find_frame(line: str) -> bytes | None:
    """The longest hex byte dump in ``line`` (None if there is none of at least 7 bytes)."""
    best = None
    for m in _HEX.finditer(line):
        digits = re.sub(r"[ :,]", "", m.group(1))
        if best is None or len(digits) > len(best):
            best = digits
    return None if best is None else bytes.fromhex(best)


class Console:
    """Annotates lines; keeps the counters of frames it decoded in memory only (nothing is stored)."""

    def __init__(self, decoder: FrameDecoder, models: InstalledModels | None = None) -> None:
        self.decoder = decoder
        self.models = models
        self.frames = 0
        self.rejected = 0

    def annotate(self, line: str) -> str:
        line = line.rstrip("\r\n")
        data = find_frame(line)
        if data is None:
            return line
        try:
            frame, verdict = self.decoder.inspect(data)
        except GatewayError as exc:
            self.rejected += 1
            return f"{line}  => rejected: {getattr(exc, 'reason', 'error')} ({exc})"
        self.frames += 1
        if verdict == "new":
            self.decoder.accept(frame)
        return f"{line}  => {self._describe(frame, verdict)}"

    def _describe(self, frame: DecodedFrame, verdict: str) -> str:
        head = f"node {frame.node_id} ({frame.node_name}) fcnt {frame.fcnt}"
        if verdict != "new":
            head += f" [{verdict}: the gateway would reject it]"
        return f"{head}: {self._values(frame)}"

    def _values(self, frame: DecodedFrame) -> str:
        if frame.values is not None:
            return (
                ", ".join(
                    f"ch{r.channel} {r.type} {r.value}{' ' + r.unit if r.unit else ''}" for r in frame.values
                )
                or "(no values)"
            )
        if frame.codec is PayloadCodec.MODEL and self.models is not None:
            model = self.models.model(frame.model_id or 0, frame.model_version or 0)
            if model is None:
                missing = f"model {frame.model_id}@{frame.model_version} not installed"
                return f"{missing}: {frame.payload.hex()}"
            try:
                values = model.values(model.decode(frame.payload))
            except GatewayError as exc:
                return f"payload does not decode under model {model.key}: {exc}"
            names = model.schema.names
            rows = ["; ".join(f"{n}={v:g}" for n, v in zip(names, row, strict=True)) for row in values]
            return f"{len(rows)} samples (model {model.key}): " + " | ".join(rows)
        return f"payload {frame.payload.hex()}"

    def run(self, lines: Iterable[str], out: TextIO, stop: Callable[[], bool] = lambda: False) -> int:
        count = 0
        for line in lines:
            out.write(self.annotate(line) + "\n")
            out.flush()
            count += 1
            if stop():
                break
        return count


def port_lines(port, max_lines: int = 0) -> Iterable[str]:
    """Lines from a serial port (decoded leniently: debug output is not always clean ASCII)."""
    n = 0
    while max_lines <= 0 or n < max_lines:
        raw = port.readline()
        if not raw:
            continue
        n += 1
        yield raw.decode("utf-8", "replace")
