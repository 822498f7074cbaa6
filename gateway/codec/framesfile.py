"""The frames file of ``lora-gw model encode`` / ``model decode``: JSON lines, every frame on its own line.

A frame whose samples all equal the model's ``base`` codes to an *empty* payload, so a format of bare
hex lines (where an empty line is easily skipped) silently loses frames. Here each frame is a JSON
object that states its sample count, and a header states the totals, so a truncated, shifted or
edited file is refused instead of decoding to fewer, misaligned rows:

    {"format": "lora-gw-frames/1", "model": "4@3", "sha256": "…", "frames": 25, "samples": 400, "time": true}
    {"frame": 0, "samples": 16, "payload": "a1b2…", "time": ["2020-01-01T00:00", …]}
    {"frame": 1, "samples": 16, "payload": ""}
    …

``sha256`` is the model's; ``time`` (header) says whether frames carry the CSV's ``time`` cells.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.codec.errors import DataError, PayloadError
from gateway.codec.model import MAX_SAMPLES

FORMAT = "lora-gw-frames/1"
STDIO = "-"


@dataclass(frozen=True, slots=True)
class FrameRecord:
    samples: int
    payload: bytes
    times: list[str] | None = None


@dataclass(frozen=True, slots=True)
class FramesFile:
    model: str  # "ID@VERSION" of the model that encoded the frames
    sha256: str
    frames: list[FrameRecord]
    has_time: bool

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.frames)

    def dumps(self) -> str:
        head = {
            "format": FORMAT,
            "model": self.model,
            "sha256": self.sha256,
            "frames": len(self.frames),
            "samples": self.samples,
            "time": self.has_time,
        }
        lines = [json.dumps(head, ensure_ascii=False)]
        for i, f in enumerate(self.frames):
            body: dict[str, Any] = {"frame": i, "samples": f.samples, "payload": f.payload.hex()}
            if f.times is not None:
                body["time"] = f.times
            lines.append(json.dumps(body, ensure_ascii=False))
        return "\n".join(lines) + "\n"


def write_frames(path: str | Path, frames: FramesFile) -> None:
    """Write the file (``-``: standard output)."""
    text = frames.dumps()
    if str(path) == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}") from None


def read_frames(path: str | Path) -> FramesFile:
    """Parse and check a frames file (``-``: standard input); any inconsistency is a PayloadError."""
    source = "standard input" if str(path) == STDIO else str(path)
    try:
        raw = sys.stdin.buffer.read() if str(path) == STDIO else Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    return parse_frames(text, source)


def _fail(source: str, lineno: int, why: str) -> PayloadError:
    return PayloadError(f"{source}: line {lineno}: {why}")


def parse_frames(text: str, source: str = "frames") -> FramesFile:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise PayloadError(f"{source}: empty file, expected a {FORMAT} header")
    try:
        head = json.loads(lines[0])
    except (ValueError, RecursionError):
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise PayloadError(
            f"{source}: not a frames file (line 1 must be a {FORMAT} header; files of bare hex lines "
            "from older versions must be encoded again)"
        )
    n_frames, n_samples, has_time = head.get("frames"), head.get("samples"), head.get("time", False)
    model, sha = head.get("model"), head.get("sha256")
    if not _count(n_frames) or not _count(n_samples) or not isinstance(has_time, bool):
        raise _fail(source, 1, "header needs integer 'frames' and 'samples' and a boolean 'time'")
    if not isinstance(model, str) or not isinstance(sha, str):
        raise _fail(source, 1, "header needs the model's 'model' (ID@VERSION) and 'sha256'")
    records = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise _fail(
                source, lineno, "empty line (every frame, even one with an empty payload, has a line)"
            )
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise _fail(source, lineno, "not a JSON object") from None
        if not isinstance(obj, dict):
            raise _fail(source, lineno, "not a JSON object")
        index = lineno - 2
        if not _count(obj.get("frame")) or obj["frame"] != index:
            raise _fail(source, lineno, f"holds frame {obj.get('frame')!r}, expected frame {index}")
        n = obj.get("samples")
        if not _count(n) or not 1 <= n <= MAX_SAMPLES:
            raise _fail(source, lineno, f"'samples' must be an integer 1..{MAX_SAMPLES}")
        hexed = obj.get("payload")
        try:
            if not isinstance(hexed, str):
                raise ValueError
            payload = bytes.fromhex(hexed)
        except ValueError:
            raise _fail(
                source, lineno, "'payload' must be a hex string (\"\" for an empty payload)"
            ) from None
        times = obj.get("time")
        if has_time:
            if not isinstance(times, list) or len(times) != n or not all(isinstance(t, str) for t in times):
                raise _fail(source, lineno, f"'time' must be a list of {n} strings")
        elif times is not None:
            raise _fail(source, lineno, "has 'time' but the header says the frames carry none")
        records.append(FrameRecord(n, payload, times))
    if len(records) != n_frames:
        raise PayloadError(
            f"{source}: holds {len(records)} frames, its header says {n_frames} (truncated or edited)"
        )
    total = sum(r.samples for r in records)
    if total != n_samples:
        raise PayloadError(f"{source}: frames hold {total} samples, its header says {n_samples}")
    return FramesFile(model, sha, records, has_time)


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
