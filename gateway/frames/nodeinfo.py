"""The node-info payload (codec byte 0x02, docs/frame-format.md "Node info"): which firmware a node runs
and which learned models it holds, so that the gateway sends a "set model" command only for a version
the node can switch to.

Each held model is named by id, version and the first 4 bytes of its fingerprint: a model that carries
the same id and version as the gateway's but other weights (trained elsewhere, re-exported) is told apart
before the node is told to use it, because its frames would then fail as ``model_mismatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.frames.errors import FrameError, Reason

LAYOUT = 0  # this layout; a later one keeps these fields and appends (this gateway ignores the rest)
FP_PREFIX_LEN = 4
MAX_MODELS = 16
NO_MODEL = 0xFF  # active model id when the node sends raw or Cayenne LPP payloads
_HEAD = 8  # layout, firmware major/minor/patch, active id, active version (2), count
_ENTRY = 3 + FP_PREFIX_LEN


@dataclass(frozen=True, slots=True)
class HeldModel:
    """A model version in the node's firmware, with the first bytes of its fingerprint."""

    model_id: int
    version: int
    fp_prefix: bytes

    @property
    def key(self) -> str:
        return f"{self.model_id}@{self.version}"

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "version": self.version, "fp_prefix": self.fp_prefix.hex()}


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node reports of itself. ``active``: (model id, version) it sends with, None for raw/LPP."""

    firmware: tuple[int, int, int]
    active: tuple[int, int] | None
    models: tuple[HeldModel, ...]

    @property
    def firmware_version(self) -> str:
        return ".".join(str(v) for v in self.firmware)

    def held(self, model_id: int, version: int) -> HeldModel | None:
        return next((m for m in self.models if (m.model_id, m.version) == (model_id, version)), None)

    def to_dict(self) -> dict:
        return {
            "firmware": self.firmware_version,
            "active_model": None if self.active is None else f"{self.active[0]}@{self.active[1]}",
            "models": [m.to_dict() for m in self.models],
        }


def _check_model(model_id: int, version: int) -> None:
    if not 0 <= model_id <= 15:
        raise ValueError(f"model id {model_id} is outside 0..15")
    if not 0 <= version <= 0xFFFF:
        raise ValueError(f"model version {version} is outside 0..65535 (the set-model command's range)")


def encode(info: NodeInfo) -> bytes:
    """The payload bytes (node side: simulated nodes, tests; the C export has lgw_build_info)."""
    if not all(0 <= v <= 255 for v in info.firmware) or len(info.firmware) != 3:
        raise ValueError(f"firmware version {info.firmware}: three numbers 0..255")
    if len(info.models) > MAX_MODELS:
        raise ValueError(f"{len(info.models)} models: a node reports at most {MAX_MODELS}")
    if info.active is None:
        active = bytes((NO_MODEL, 0, 0))
    else:
        _check_model(*info.active)
        active = bytes((info.active[0],)) + info.active[1].to_bytes(2, "little")
    out = bytearray((LAYOUT, *info.firmware))
    out += active + bytes((len(info.models),))
    for m in info.models:
        _check_model(m.model_id, m.version)
        if len(m.fp_prefix) != FP_PREFIX_LEN:
            raise ValueError(f"model {m.key}: fingerprint prefix of {FP_PREFIX_LEN} bytes expected")
        out += bytes((m.model_id,)) + m.version.to_bytes(2, "little") + m.fp_prefix
    return bytes(out)


def held_model(model_id: int, version: int, fingerprint: bytes) -> HeldModel:
    """The entry for a model whose full 8-byte fingerprint is known."""
    return HeldModel(model_id, version, bytes(fingerprint[:FP_PREFIX_LEN]))


def parse(payload: bytes, node_id: int | None = None) -> NodeInfo:
    """The payload's fields, or FrameError(bad_payload) naming what is wrong."""
    who = "" if node_id is None else f"node {node_id}: "

    def bad(why: str) -> FrameError:
        return FrameError(Reason.BAD_PAYLOAD, f"{who}node info {why}")

    if len(payload) < _HEAD:
        raise bad(f"of {len(payload)} bytes is shorter than its {_HEAD}-byte head")
    layout, major, minor, patch, aid = payload[:5]
    aver = int.from_bytes(payload[5:7], "little")
    count = payload[7]
    if count > MAX_MODELS:
        raise bad(f"lists {count} models (at most {MAX_MODELS})")
    end = _HEAD + count * _ENTRY
    if len(payload) < end or (layout == LAYOUT and len(payload) != end):
        raise bad(f"of {len(payload)} bytes does not hold its {count} model entries ({end} bytes)")
    if aid != NO_MODEL and aid > 15:
        raise bad(f"names active model id {aid} (0..15, or 0xff for none)")
    models = []
    for at in range(_HEAD, end, _ENTRY):
        mid = payload[at]
        if mid > 15:
            raise bad(f"lists model id {mid} (0..15)")
        version = int.from_bytes(payload[at + 1 : at + 3], "little")
        models.append(HeldModel(mid, version, bytes(payload[at + 3 : at + _ENTRY])))
    return NodeInfo((major, minor, patch), None if aid == NO_MODEL else (aid, aver), tuple(models))
