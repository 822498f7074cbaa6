"""Telemetry of every node type, rendered by the real Renderer: frame+model, LPP (every LPP type the
decoder knows) and RadioHead."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from gateway.codec import demo_model
from gateway.frames import Node, lpp
from gateway.frames.types import NodeFormat, PayloadCodec
from gateway.pipeline.message import StoredFrame
from gateway.pipeline.render import Renderer
from tests.service.frames_util import accepted

# One reading of every LPP type, two temperatures (the key must be made unique).
LPP_READINGS: list[tuple[int, str, Any]] = []
for _i, _t in enumerate(lpp.TYPES):
    if _t.fields:
        _v: Any = {
            f: 1.5 if _t.code != 0x88 else {"latitude": 52.5, "longitude": 13.4, "altitude": 34.0}[f]
            for f in _t.fields
        }
    elif _t.divisor == 1 and _t.size == 1:
        _v = 1
    else:
        _v = 12.5 if not _t.signed or _t.name != "temperature" else -3.5
    LPP_READINGS.append((_i + 1, _t.name, _v))
LPP_READINGS.append((40, "temperature", 21.5))

MODEL_NODE = Node(node_id=0x5101, name="weather-1", interval_s=300.0)
LPP_NODE = Node(node_id=0x0A0B0C0D, name="lpp-every-type", format=NodeFormat.LPP, interval_s=120.0)
RH_NODE = Node(
    node_id=0x0000002A,
    name="rh-node",
    format=NodeFormat.RADIOHEAD,
    payload=PayloadCodec.LPP,
    interval_s=60.0,
    radiohead_address=0x2A,
)
NODES = {n.node_id: n for n in (MODEL_NODE, LPP_NODE, RH_NODE)}


def renderer() -> tuple[Renderer, Any]:
    model = demo_model()
    r = Renderer("gw1", "lora", NODES.get, lambda mid, ver: model if mid == model.model_id else None)
    return r, model


def telemetry_of_every_kind(utc_ms: int = 1_700_000_000_000) -> dict[str, tuple[Node, dict[str, Any]]]:
    """``{"model": (node, message), "lpp": ..., "radiohead": ...}`` as the gateway publishes them."""
    r, model = renderer()
    samples = model.generate(model.samples_per_frame, np.random.default_rng(3))
    payload = model.encode(samples)
    frames = {
        "model": replace(
            accepted(
                MODEL_NODE.node_id, 7, payload, codec="model", model=(model.model_id, model.version % 8)
            ),
            radio=replace(accepted(1, 1).radio, utc_ms=utc_ms),
        ),
        "lpp": replace(accepted(LPP_NODE.node_id, 3, lpp.encode(LPP_READINGS)), format="lpp"),
        "radiohead": replace(
            accepted(RH_NODE.node_id, 9, lpp.encode([(1, "temperature", 6.8), (2, "humidity", 81.5)])),
            format="radiohead",
            codec="radiohead",
        ),
    }
    out = {}
    for kind, f in frames.items():
        msg = r.render(StoredFrame(1, f))
        assert msg is not None and msg.kind == "telemetry", (kind, msg)
        out[kind] = (NODES[f.node_id], json.loads(msg.payload))
    return out
