"""Stored frame → MQTT topic and JSON, at publish time.

Rendering late (from the stored bytes) keeps outbox rows small and lets a frame whose model is not
installed go out raw now and as telemetry once the model arrives. Topics (``<p>`` = prefix/gateway id):
``<p>/nodes/<node>/telemetry`` and ``<p>/nodes/<node>/raw``; ``<node>`` is the node's registry name
(validated: one safe topic level, so two nodes never share a topic), or ``id-<8 hex digits>`` for a node
whose stored name is unusable (a legacy registry) or that is no longer registered.
Every message carries ``msg_id`` (node id + full counter), stable across restarts and retransmissions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.frames import FrameError, lpp
from gateway.frames.registry import topic_name
from gateway.pipeline.message import StoredFrame, message_id

log = logging.getLogger(__name__)

MAX_GAP_FRAMES = 8  # longer gaps are not estimated: the model's guess would mean little


class NodeInfo(Protocol):
    """What rendering needs of a registry node (gateway.frames.Node satisfies it)."""

    node_id: int
    name: str

    @property
    def payload_codec(self) -> Any: ...


class ModelLike(Protocol):
    """What rendering needs of a codec model (gateway.codec.Model satisfies it)."""

    schema: Any

    def decode(self, payload: bytes) -> Any: ...

    def values(self, q: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Rendered:
    topic: str
    payload: bytes
    kind: str  # "telemetry" | "raw" | "estimate"


_iso_second: tuple[int, str] = (-1, "")  # the last second formatted (frames come in bursts); swapped whole


def utc_iso(utc_ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a Z suffix."""
    global _iso_second
    sec, ms = divmod(utc_ms, 1000)
    cached = _iso_second
    if cached[0] != sec:
        cached = _iso_second = (sec, datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{ms:03d}Z"


class Renderer:
    """Builds messages; ``nodes(node_id)`` and ``models(model_id, version_mod8)`` are injected lookups."""

    def __init__(
        self,
        gateway_id: str,
        topic_prefix: str,
        nodes: Callable[[int], NodeInfo | None],
        models: Callable[[int, int], ModelLike | None] | None = None,
        codec_stats: Any = None,
        gap_filling: Callable[[int], bool] | None = None,
    ) -> None:
        """``codec_stats``: a gateway.codec.CodecStats, fed every model frame decoded (live bytes per
        sample and prediction error per model, published in the stats). ``gap_filling(node_id)``: whether
        to publish model estimates for a node's frames lost on the air (off when None)."""
        self.gateway_id = gateway_id
        self.base = f"{topic_prefix}/{gateway_id}"
        self._nodes = nodes
        self._models = models
        self.codec_stats = codec_stats
        self._gap_filling = gap_filling
        self.model_failures = 0
        self.estimated = 0
        self._history: dict[int, tuple[int, Any]] = {}  # node → (fcnt, last quantised samples)
        self._extras: list[Rendered] = []
        self._topics: dict[tuple[int, str | None], tuple[str, str]] = {}  # (node, stored name) → name, topic

    @property
    def status_topic(self) -> str:
        return f"{self.base}/status"

    @property
    def stats_topic(self) -> str:
        return f"{self.base}/stats"

    def render(self, stored: StoredFrame) -> Rendered | None:
        """The message for a stored frame; a raw one when its payload cannot be decoded yet.
        None: the frame waits for its model and its raw form has already been published."""
        f = stored.frame
        node = self._nodes(f.node_id)
        key = (f.node_id, None if node is None else node.name)
        cached = self._topics.get(key)
        if cached is None:
            if len(self._topics) >= 10_000:
                self._topics.clear()
            name = topic_name(f.node_id, key[1])
            cached = self._topics[key] = (name, f"{self.base}/nodes/{name}")
        name, node_topic = cached
        head: dict[str, Any] = {
            "msg_id": message_id(f.node_id, f.fcnt),
            "gateway_id": self.gateway_id,
            "node_id": f.node_id,
            "node_name": name,
            "fcnt": f.fcnt,
            "received": utc_iso(f.radio.utc_ms),
        }
        values, why = self._values(stored, node)
        if values is not None and "_q" in values:
            self._fill_gap(stored, head, node_topic, values.pop("_q"), values.pop("_model"))
        if values is None:
            if stored.waiting_model:
                return None
            body = {
                **head,
                "format": f.format,
                "codec": f.codec,
                "model_id": f.model_id,
                "model_version": f.model_version,
                "payload_hex": f.payload.hex(),
                "undecoded": why,
                "radio": f.radio.to_dict(),
            }
            return Rendered(f"{node_topic}/raw", _dumps(body), "raw")
        interval = values.pop("_interval_s", None)
        if "samples" in values:
            stamp_samples(values["samples"], f.radio.utc_ms, interval, getattr(node, "interval_s", None))
        body = {**head, **values, "readings": flat_readings(values["values"]), "radio": f.radio.to_dict()}
        return Rendered(f"{node_topic}/telemetry", _dumps(body), "telemetry")

    def _values(self, stored: StoredFrame, node: NodeInfo | None) -> tuple[dict[str, Any] | None, str]:
        f = stored.frame
        codec = f.codec
        if codec == "radiohead":
            pc = getattr(node, "payload_codec", None) if node is not None else None
            codec = getattr(pc, "value", pc) or "lpp"
        if f.values is not None and codec in ("lpp", "raw"):
            return {"values": [r.to_dict() for r in f.values]}, ""
        if codec == "lpp":
            try:
                return {"values": [r.to_dict() for r in lpp.decode(f.payload)]}, ""
            except FrameError as exc:  # stored after the decoder checked it: only a code change gets here
                return None, f"lpp: {exc.message}"
        if codec == "raw":
            return {"values": [{"channel": 0, "type": "raw", "value": f.payload.hex(), "unit": None}]}, ""
        if codec == "model" and f.model_id is not None:
            return self._model_values(f.model_id, f.model_version or 0, f.payload)
        return None, f"codec {codec} cannot be decoded"

    def _model_values(self, model_id: int, version: int, payload: bytes) -> tuple[dict[str, Any] | None, str]:
        model = self._models(model_id, version) if self._models is not None else None
        if model is None:
            return None, f"model {model_id} version {version} is not installed"
        try:
            q = model.decode(payload)
            phys = model.values(q)
            if self.codec_stats is not None:
                self.codec_stats.observe(model, payload, q)
        except Exception as exc:  # a model that does not match its frames must not stop the gateway
            self.model_failures += 1
            log.warning("model %d v%d failed to decode a frame: %s", model_id, version, exc)
            return None, f"model {model_id} failed: {type(exc).__name__}"
        out = self._sample_values(model, phys)
        out.update(model_id=model_id, model_version=version, _q=q, _model=model)
        out["_interval_s"] = getattr(model, "meta", {}).get("sample_interval_s")
        return out, ""

    @staticmethod
    def _sample_values(model: ModelLike, phys: Any) -> dict[str, Any]:
        channels = model.schema.channels
        samples = []
        for row in phys:
            samples.append(
                {ch.name: round(float(v), ch.decimals) for ch, v in zip(channels, row, strict=False)}
            )
        latest = samples[-1] if samples else {}
        values = [
            {
                "channel": i,
                "type": ch.device_class or ch.name,
                "name": ch.name,
                "value": latest.get(ch.name),
                "unit": ch.unit,
            }
            for i, ch in enumerate(channels)
        ]
        out: dict[str, Any] = {"values": values}
        if len(samples) > 1:
            out["samples"] = samples
        return out

    def _fill_gap(self, stored: StoredFrame, head: dict[str, Any], topic: str, q: Any, model: Any) -> None:
        """Estimates for the frames lost between this node's previous model frame and this one,
        published (flagged ``estimated``) but never stored as measurements."""
        f = stored.frame
        prev = self._history.get(f.node_id)
        if prev is None or f.fcnt > prev[0]:
            self._history[f.node_id] = (f.fcnt, q)
        if prev is None or self._gap_filling is None or not self._gap_filling(f.node_id):
            return
        lost = f.fcnt - prev[0] - 1
        if not 0 < lost <= MAX_GAP_FRAMES or len(q) == 0:
            return
        per_frame = len(q)
        try:
            # the whole frames on both sides; the last sample's time sets the hour of day
            est = model.fill_gap(prev[1], lost * per_frame, q, end_time=f.radio.utc_ms / 1000)
            phys = model.values(est)
        except Exception as exc:  # estimates are optional: never let them stop the real message
            log.warning("node %08x: gap filling failed: %s", f.node_id, exc)
            return
        for k in range(lost):
            fcnt = prev[0] + 1 + k
            body = {
                **head,
                "msg_id": message_id(f.node_id, fcnt) + "-estimated",
                "fcnt": fcnt,
                "estimated": True,
                **self._sample_values(model, phys[k * per_frame : (k + 1) * per_frame]),
            }
            body["readings"] = flat_readings(body["values"])
            self._extras.append(Rendered(f"{topic}/telemetry", _dumps(body), "estimate"))
            self.estimated += 1

    def take_extras(self) -> list[Rendered]:
        """Messages to publish besides the frames (gap estimates): not stored, not retried."""
        out, self._extras = self._extras, []
        return out


def flat_readings(values: list[dict[str, Any]]) -> dict[str, Any]:
    """``values`` as one flat object, ``{"temperature": 6.8, ...}``, so templates need no list indexing.

    The key is the channel's name (model frames) or type (LPP); a key seen twice in one message gets the
    channel number appended (``temperature``, ``temperature_3``), and a reading with several fields
    (accelerometer, GPS) gives one key per field (``accelerometer_x``). The order is the frame's, so a
    node's keys are the same in every message while it sends the same channels."""
    return {key: value for key, _entry, value in reading_keys(values)}


def reading_keys(values: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], Any]]:
    """``(key, values entry, value)`` for each flat reading, in order (see :func:`flat_readings`)."""
    out: list[tuple[str, dict[str, Any], Any]] = []
    seen: set[str] = set()
    for v in values:
        key = str(v.get("name") or v.get("type") or f"channel_{v.get('channel')}")
        if key in seen:
            key = f"{key}_{v.get('channel')}"
        seen.add(key)
        value = v.get("value")
        if isinstance(value, dict):
            out.extend((f"{key}_{name}", v, field_value) for name, field_value in value.items())
        else:
            out.append((key, v, value))
    return out


def stamp_samples(
    samples: list[dict[str, Any]], received_ms: int, sample_interval_s: float | None, node_interval_s: Any
) -> None:
    """Give each sample of a multi-sample frame its ``time``: the last sample is taken at the receive time,
    earlier ones one sampling interval apart before it. The interval is the model's ``sample_interval_s``
    (weight-file metadata), else the node's reporting interval divided by the samples per frame (a node
    sends a frame per reporting interval); without either, samples carry no time."""
    n = len(samples)
    step = sample_interval_s
    if not step and isinstance(node_interval_s, int | float) and node_interval_s > 0:
        step = float(node_interval_s) / n
    if not step:
        return
    for i, sample in enumerate(samples):
        sample["time"] = utc_iso(received_ms - round((n - 1 - i) * step * 1000))


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class NodeCache:
    """Registry lookups for rendering without a query per message; entries expire after ``ttl_s``
    so a renamed node gets its new topic soon, and misses are not cached."""

    def __init__(
        self,
        lookup: Callable[[int], NodeInfo | None],
        ttl_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self._lookup = lookup
        self._ttl = ttl_s
        self._clock = clock or time.monotonic
        self._cache: dict[int, tuple[float, NodeInfo]] = {}

    def __call__(self, node_id: int) -> NodeInfo | None:
        now = self._clock()
        hit = self._cache.get(node_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        node = self._lookup(node_id)
        if node is not None:
            self._cache[node_id] = (now, node)
        else:
            self._cache.pop(node_id, None)
        return node
