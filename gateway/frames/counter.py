"""Frame counters: 32 bits per node, the low 16 on air, the rest reconstructed (ChirpStack's rule)."""

from __future__ import annotations

DEFAULT_MAX_GAP = 16384  # frames a node may skip (lost on air) before the gateway refuses to follow it
WRAP = 1 << 16

NEW = "new"  # within max_gap ahead of (or equal to) the next expected counter
DUPLICATE = "duplicate"  # the 16 bits of the last accepted frame: a retransmission
AHEAD = "ahead"  # further ahead than max_gap: an old frame replayed (full − 2^16), or a node that jumped


def reconstruct(next_fcnt: int, rx16: int, max_gap: int = DEFAULT_MAX_GAP) -> tuple[str, int]:
    """(verdict, full counter) for the 16-bit on-air ``rx16`` given the next expected full counter.

    ``rx16 == (next - 1) mod 2^16``, once a frame was accepted, is the last accepted frame again;
    otherwise ``full = next + ((rx16 - next) mod 2^16)``.
    """
    if next_fcnt > 0 and rx16 == (next_fcnt - 1) & 0xFFFF:
        return DUPLICATE, next_fcnt - 1
    step = (rx16 - next_fcnt) % WRAP
    return (NEW if step <= max_gap else AHEAD), next_fcnt + step
