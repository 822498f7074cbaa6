"""A small bar chart written as a PNG with zlib and struct only (no plotting dependency on the Pi).

PNG layout (RFC 2083): the 8-byte signature, then chunks (length, type, data, CRC-32 of type+data):
IHDR (size, 8-bit RGB), one IDAT (zlib stream of scanlines, each prefixed by filter type 0), IEND.
Axis labels use a 3×5 pixel digit font, scaled 2×.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

Rgb = tuple[int, int, int]
WHITE: Rgb = (255, 255, 255)
GRID: Rgb = (220, 220, 220)
AXIS: Rgb = (60, 60, 60)
BAR: Rgb = (40, 100, 200)
PEAK: Rgb = (210, 50, 40)

# 3×5 glyphs, one string of 15 bits per character (rows top to bottom).
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    "-": "000000111000000",
    ".": "000000000000010",
    " ": "000000000000000",
}
SCALE = 2
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 24


class Canvas:
    def __init__(self, width: int, height: int, background: Rgb = WHITE) -> None:
        self.width, self.height = width, height
        self.px = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: Rgb) -> None:
        """Fill [x0, x1) × [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        for y in range(max(0, y0), min(self.height, y1)):
            if x1 > x0:
                self.px[y][3 * x0 : 3 * x1] = bytes(colour) * (x1 - x0)

    def text(self, x: int, y: int, s: str, colour: Rgb = AXIS) -> None:
        for i, ch in enumerate(s):
            bits = _FONT.get(ch, _FONT[" "])
            for k, bit in enumerate(bits):
                if bit == "1":
                    cx = x + (i * 4 + k % 3) * SCALE
                    cy = y + (k // 3) * SCALE
                    self.rect(cx, cy, cx + SCALE, cy + SCALE, colour)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.px)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(s: str) -> int:
    return len(s) * 4 * SCALE


def bar_chart(
    values: Sequence[float],
    lo: float,
    hi: float,
    left_label: str = "",
    right_label: str = "",
    highlight: Sequence[bool] | None = None,
    grid_step: float = 10.0,
    height: int = 220,
) -> Canvas:
    """Bars from ``lo`` up to each value (clipped to ``hi``), grid lines every ``grid_step``."""
    n = len(values)
    bar_w = max(2, min(16, 640 // max(n, 1)))
    width = LEFT + n * bar_w + RIGHT
    c = Canvas(width, height)
    plot_h = height - TOP - BOTTOM

    def y_of(v: float) -> int:
        frac = (min(max(v, lo), hi) - lo) / (hi - lo) if hi > lo else 0.0
        return TOP + plot_h - round(frac * plot_h)

    g = lo - lo % grid_step + (grid_step if lo % grid_step else 0)
    while g <= hi:
        y = y_of(g)
        c.rect(LEFT, y, width - RIGHT, y + 1, GRID)
        label = f"{g:.0f}"
        c.text(LEFT - 4 - text_width(label), y - 5, label)
        g += grid_step
    for i, v in enumerate(values):
        colour = PEAK if highlight is not None and highlight[i] else BAR
        x = LEFT + i * bar_w
        c.rect(x + (1 if bar_w > 3 else 0), y_of(v), x + bar_w, TOP + plot_h, colour)
    c.rect(LEFT - 1, TOP, LEFT, TOP + plot_h + 1, AXIS)
    c.rect(LEFT - 1, TOP + plot_h, width - RIGHT, TOP + plot_h + 1, AXIS)
    c.text(LEFT, TOP + plot_h + 6, left_label)
    c.text(width - RIGHT - text_width(right_label), TOP + plot_h + 6, right_label)
    return c


def write_png(path: str | Path, canvas: Canvas) -> None:
    Path(path).write_bytes(canvas.png())
