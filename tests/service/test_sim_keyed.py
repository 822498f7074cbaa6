"""Simulated nodes follow the registry like provisioned nodes: a key the operator gave them, and its epoch."""

from __future__ import annotations

from gateway.frames import FrameDecoder, Node, NodeRegistry
from gateway.service.radio import SIM_NODE_BASE, SimNetwork

KEY = bytes(range(16))


def test_simulated_node_uses_the_registry_key_and_epoch(tmp_path) -> None:
    with NodeRegistry.open(tmp_path / "state") as registry:
        registry.add(Node(SIM_NODE_BASE + 1, "sim-1", key=KEY))
        registry.reset_counter(SIM_NODE_BASE + 1, 0, new_epoch=True)
        net = SimNetwork(nodes=1)
        net.register(registry)
        enc = net.encoders[0]
        assert enc.secured and enc.key_epoch == 1
        frame = FrameDecoder(registry).decode(enc.encode(b"x"))
        assert (frame.encrypted, frame.payload) == (True, b"x")
