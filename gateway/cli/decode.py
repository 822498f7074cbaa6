"""``lora-gw decode HEX``: verify and decode one packet offline and print its values.

Uses the node registry (keys, declared formats) when the state database exists, and the installed
models for learned-model frames (the service's candidate logic: the version whose fingerprint the
frame's CRC/MIC verifies under); it never changes counters, and reports the counter check instead of
enforcing it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import paths
from gateway.errors import GatewayError
from gateway.frames import lpp, nodeinfo, radiohead
from gateway.frames.decoder import FrameDecoder
from gateway.frames.errors import FrameError, Reason
from gateway.frames.registry import Node, NodeRegistry, parse_node_ref
from gateway.frames.registry import shown as shown_text
from gateway.frames.types import DecodedFrame, NodeFormat, PayloadCodec, Reading

if TYPE_CHECKING:
    from gateway.pipeline.models import InstalledModels

_SEPARATORS = re.compile(r"[\s:_-]+")


def parse_hex(text: str) -> bytes:
    """Hex digits, optionally with a 0x prefix and spaces/colons between bytes."""
    cleaned = _SEPARATORS.sub("", text.strip())
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise GatewayError(f"{text!r} is not a hex string", "bad_input") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode one payload (frame, Cayenne LPP or RadioHead) and print its values",
        description="Decode one packet given in hex. Without --codec the registry's formats decide "
        "(as the gateway does); secured frames need their node in the registry (for the key).",
    )
    parser.add_argument("hex", metavar="HEX", help="the packet bytes in hex")
    parser.add_argument(
        "--codec", choices=["lpp", "radiohead", "frame"], help="read the bytes as this format (default: auto)"
    )
    parser.add_argument(
        "--node", metavar="ID", help="the node that sent it (id or name; default: the id in the frame)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=cmd_decode)


def _nodes(args: argparse.Namespace) -> list[Node]:
    """Registered nodes, without creating a state directory or database just to decode."""
    db = paths.state_dir(args.state_dir, create=False) / paths.DB_NAME
    if not db.exists():
        return []
    with NodeRegistry(db) as registry:
        return registry.nodes()


def _models(args: argparse.Namespace) -> InstalledModels | None:
    """The installed models, if the state directory has any (never creating one just to decode)."""
    state = paths.state_dir(args.state_dir, create=False)
    if not (Path(state) / "models").is_dir():
        return None
    from gateway.pipeline.models import InstalledModels  # numpy only when models exist

    return InstalledModels(state, ttl_s=float("inf"))


def _hint(nodes: list[Node], ref: str | None) -> int | None:
    if ref is None:
        return None
    nid = parse_node_ref(ref)
    for node in nodes:
        if node.node_id == nid or (nid is None and node.name == ref):
            return node.node_id
    raise FrameError(Reason.UNKNOWN_NODE, f"no node {ref} in the registry")


def cmd_decode(args: argparse.Namespace) -> int:
    data = parse_hex(args.hex)
    if args.codec == "lpp":
        values = lpp.decode(data)
        result: dict = {"format": "lpp", "codec": "lpp", "payload_hex": data.hex(), "values": values}
        return _print(args, result)
    nodes = _nodes(args)
    hint = _hint(nodes, args.node)
    models = _models(args)
    decoder = FrameDecoder(nodes, models=models.candidates if models is not None else None)
    if args.codec == "radiohead":
        return _print(args, _radiohead(decoder, nodes, data, hint))
    fmt = NodeFormat.FRAME if args.codec == "frame" else None
    frame, verdict = decoder.inspect(data, fmt, None if fmt else hint)
    if fmt and hint is not None and frame.node_id != hint:
        raise FrameError(Reason.UNKNOWN_NODE, f"the frame names node {frame.node_id}, not {args.node}")
    result = _from_frame(frame, verdict)
    if frame.codec is PayloadCodec.MODEL and models is not None:
        result.update(_model_samples(models, frame))
    return _print(args, result)


def _model_samples(models: InstalledModels, frame: DecodedFrame) -> dict[str, Any]:
    """``samples`` (channel name → physical value, one object per sample) and ``units``."""
    model = models.model(frame.model_id or 0, frame.model_version or 0)
    if model is None:  # removed between the check and now
        raise FrameError(Reason.UNKNOWN_MODEL, f"model {frame.model_id}@{frame.model_version}: not installed")
    phys = model.values(model.decode(frame.payload))  # PayloadError: one line, like any GatewayError
    channels = model.schema.channels
    return {
        "samples": [{ch.name: round(float(v), ch.decimals) for ch, v in zip(channels, row, strict=True)}
                    for row in phys],
        "units": {ch.name: ch.unit for ch in channels},
    }  # fmt: skip


def _radiohead(decoder: FrameDecoder, nodes: list[Node], data: bytes, hint: int | None) -> dict:
    hdr, body = radiohead.parse(data)
    known = any(n.radiohead_address == hdr.sender for n in nodes)
    if known or hint is not None:
        frame, verdict = decoder.inspect(data, None, hint if hint is not None else None)
        if frame.format is NodeFormat.RADIOHEAD:
            return _from_frame(frame, verdict)
    result: dict = {
        "format": "radiohead",
        "radiohead": {"to": hdr.to, "from": hdr.sender, "id": hdr.id, "flags": hdr.flags},
        "payload_hex": body.hex(),
    }
    try:
        result["codec"], result["values"] = "lpp", lpp.decode(body)
    except FrameError:
        result["codec"], result["values"] = "raw", [Reading(0, "raw", body.hex(), None)]
        result["note"] = "the data is not Cayenne LPP; shown raw (node not registered)"
    return result


def _from_frame(frame: DecodedFrame, verdict: str) -> dict:
    result = frame.to_dict()
    result["values"] = frame.values
    if frame.format is NodeFormat.FRAME:
        result["counter"] = verdict
    else:  # no counter, flags or encryption in these formats
        for key in ("fcnt", "ack_requested", "encrypted", "model_id", "model_version"):
            del result[key]
    if frame.codec is PayloadCodec.MODEL:
        result["values"] = []
    if frame.codec is PayloadCodec.INFO:
        result["values"] = []
        result["node_info"] = nodeinfo.parse(frame.payload, frame.node_id).to_dict()
    return result


def _print(args: argparse.Namespace, result: dict) -> int:
    values: list[Reading] = result.get("values") or []
    if args.json:
        print(json.dumps({**result, "values": [v.to_dict() for v in values]}, ensure_ascii=False))
        return 0
    labels = {
        "format": "format",
        "node_id": "node",
        "node_name": "name",
        "fcnt": "fcnt",
        "counter": "counter",
        "frame_type": "type",
        "ack_requested": "ack requested",
        "encrypted": "encrypted",
        "codec": "codec",
        "model_id": "model",
        "model_version": "model version",
        "radiohead": "radiohead",
        "payload_hex": "payload",
        "node_info": "node info",
        "note": "note",
    }
    for key, label in labels.items():
        value = result.get(key)
        if key == "node_name" and isinstance(value, str):
            value = shown_text(value)  # a legacy name may hold control characters
        if value is None or (key == "model_version" and result.get("model_id") is None):
            continue
        if key == "node_id":
            value = f"{value} (0x{value:08x})"
        elif key == "radiohead":
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif key == "node_info":
            held = ", ".join(f"{m['model_id']}@{m['version']} ({m['fp_prefix']})" for m in value["models"])
            value = (
                f"firmware {value['firmware']}, sends with {value['active_model'] or 'raw/LPP'},"
                f" holds {held or 'no models'}"
            )
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"{label:<14}{value}")
    units = result.get("units") or {}
    for i, sample in enumerate(result.get("samples") or []):
        shown = ", ".join(f"{k}={v}{' ' + units[k] if units.get(k) else ''}" for k, v in sample.items())
        print(f"  #{i:<3} {shown}")
    for r in values:
        shown = (
            r.value if not isinstance(r.value, dict) else ", ".join(f"{k}={v}" for k, v in r.value.items())
        )
        print(f"  ch {r.channel:<3} {r.type:<14} {shown}{' ' + r.unit if r.unit else ''}")
    return 0
