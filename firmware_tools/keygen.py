"""``lora-fw keygen``: a fresh AES-128 root key (the OS CSPRNG), registered for a secured node."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from gateway.frames.registry import Node, NodeRegistry

KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class NewKey:
    node: Node
    key: bytes

    def c_initialiser(self) -> str:
        """The node as a C ``lgw_node_t`` initialiser (lgw_node.h)."""
        body = ", ".join(f"0x{b:02x}" for b in self.key)
        return f"static const lgw_node_t LGW_NODE = {{0x{self.node.node_id:08x}u, 1, {{{body}}}}};"


def keygen(node_id: int, name: str | None, state_dir: str | os.PathLike[str] | None) -> NewKey:
    """Register ``node_id`` as a secured frame node with a new random root key; the registry refuses
    an existing id or name (RegistryError, one line)."""
    key = secrets.token_bytes(KEY_BYTES)
    with NodeRegistry.open(state_dir) as registry:
        stored = registry.add(Node(node_id=node_id, name=name or f"node-{node_id}", key=key))
    return NewKey(stored, key)
