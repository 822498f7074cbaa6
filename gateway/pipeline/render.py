"""Stored frame → MQTT topic and JSON, at publish time.

Rendering late (from the stored bytes) keeps outbox rows small and lets a frame whose model is not
installed go out raw now and as telemetry once the model arrives. Topics (``<p>`` = prefix/gateway id):
``<p>/nodes/<node>/telemetry`` and ``<p>/nodes/<node>/raw``; ``<node>`` is the node's registry name.
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
from gateway.pipeline.message import StoredFrame, message_id

log = logging.getLogger(__name__)


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
    kind: str  # "telemetry" | "raw"


def utc_iso(utc_ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a Z suffix."""
    dt = datetime.fromtimestamp(utc_ms / 1000.0, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc_ms % 1000:03d}Z"


def topic_segment(name: str) -> str:
    """A node name made safe for one topic level (no wildcards, separators or NUL)."""
    return "".join("_" if c in "/+#\0" else c for c in name) or "_"


class Renderer:
    """Builds messages; ``nodes(node_id)`` and ``models(model_id, version_mod8)`` are injected lookups."""

    def __init__(
        self,
        gateway_id: str,
        topic_prefix: str,
        nodes: Callable[[int], NodeInfo | None],
        models: Callable[[int, int], ModelLike | None] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.base = f"{topic_prefix}/{gateway_id}"
        self._nodes = nodes
        self._models = models
        self.model_failures = 0

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
        name = node.name if node is not None else f"{f.node_id:08x}"
        head: dict[str, Any] = {
            "msg_id": message_id(f.node_id, f.fcnt),
            "gateway_id": self.gateway_id,
            "node_id": f.node_id,
            "node_name": name,
            "fcnt": f.fcnt,
            "received": utc_iso(f.radio.utc_ms),
        }
        values, why = self._values(stored, node)
        node_topic = f"{self.base}/nodes/{topic_segment(name)}"
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
        body = {**head, **values, "radio": f.radio.to_dict()}
        return Rendered(f"{node_topic}/telemetry", _dumps(body), "telemetry")

    def _values(self, stored: StoredFrame, node: NodeInfo | None) -> tuple[dict[str, Any] | None, str]:
        f = stored.frame
        codec = f.codec
        if codec == "radiohead":
            pc = getattr(node, "payload_codec", None) if node is not None else None
            codec = getattr(pc, "value", pc) or "lpp"
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
            return None, f"model {model_id} version {version} (mod 8) is not installed"
        try:
            q = model.decode(payload)
            phys = model.values(q)
        except Exception as exc:  # a model that does not match its frames must not stop the gateway
            self.model_failures += 1
            log.warning("model %d v%d failed to decode a frame: %s", model_id, version, exc)
            return None, f"model {model_id} failed: {type(exc).__name__}"
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
        out: dict[str, Any] = {"values": values, "model_id": model_id, "model_version": version}
        if len(samples) > 1:
            out["samples"] = samples
        return out, ""


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
