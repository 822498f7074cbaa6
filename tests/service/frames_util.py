"""Builders for AcceptedFrame values used by the outbox and sink tests."""

from __future__ import annotations

from gateway.pipeline.message import AcceptedFrame, RadioMeta

RADIO = RadioMeta(
    rssi_dbm=-97.5,
    snr_db=6.25,
    freq_hz=868_100_000,
    freq_error_hz=-812.0,
    sf=7,
    bw_hz=125_000,
    cr="4/5",
    crc="ok",
    utc_ms=1_700_000_000_000,
)


def accepted(
    node_id: int,
    fcnt: int,
    payload: bytes = b"\x01\x67\x00\xe1",
    codec: str = "lpp",
    model: tuple[int, int] | None = None,
    utc_ms: int | None = None,
) -> AcceptedFrame:
    radio = (
        RADIO
        if utc_ms is None
        else RadioMeta(**{**{f: getattr(RADIO, f) for f in RADIO.__slots__}, "utc_ms": utc_ms})
    )
    return AcceptedFrame(
        node_id=node_id,
        fcnt=fcnt,
        next_fcnt=fcnt + 1,
        format="frame",
        codec=codec,
        model_id=None if model is None else model[0],
        model_version=None if model is None else model[1],
        payload=payload,
        radio=radio,
    )
