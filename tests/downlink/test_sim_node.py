"""The simulated node's receive window: it acts on verified commands and rejects forged or replayed ones."""

from __future__ import annotations

from gateway.frames import Node, NodeRegistry
from gateway.frames.downlink import DownlinkEncoder
from gateway.service.radio import SimNetwork

KEY = bytes(range(16))


def test_sim_node_acts_on_verified_commands_only(tmp_path):
    reg = NodeRegistry(tmp_path / "gateway.db")
    net = SimNetwork(1, speed=None)  # type: ignore[arg-type]  (manual clock: one thread)
    nid = net.node_ids[0]
    reg.add(Node(node_id=nid, name="s1", key=KEY))
    net.register(reg)
    node, st = net.sim.nodes[0], net.node_state[0]
    gw = net.sim.gateway
    good = DownlinkEncoder(nid, KEY)

    def window(frame: bytes) -> None:
        node.radio.start_receive()
        gw.transmit(frame)
        net._close_window(0, node, st)

    try:
        window(DownlinkEncoder(nid, bytes(16)).command(0, b"\x01\x05\x00"))  # forged: another key
        assert st.rejected == 1 and st.interval_s is None
        cmd = good.command(0, b"\x01\x1e\x00", confirm=True)
        window(cmd)
        assert st.interval_s == 30.0 and st.confirm_due == 0 and st.rejected == 1
        window(cmd)  # replayed
        assert st.rejected == 2 and st.commands == [b"\x01\x1e\x00"]
        window(good.command(1, b"\x02\x03\x09\x00"))
        assert st.model is None and st.switch is None  # 3@9 is not in this node's firmware: ignored
        # the next uplink reports the confirmed command: frame type 1 with its downlink counter
        up = net._uplink(0, st)
        assert (up[0] >> 4) & 3 == 1 and st.confirm_due is None
    finally:
        net.stop()
        reg.close()
