"""The simulated node's receive window: it acts on verified commands and rejects forged or replayed ones."""

from __future__ import annotations

from gateway.codec import Model, demo_model
from gateway.frames import FrameDecoder, Node, NodeRegistry, PayloadCodec, nodeinfo
from gateway.frames.downlink import DownlinkEncoder
from gateway.frames.nodeinfo import NodeInfo, held_model
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


def test_sim_node_reports_its_firmware_switches_only_to_held_models_and_reports_again(tmp_path):
    demo = demo_model()
    v2 = Model(demo.schema, demo.params, demo.samples_per_frame, model_id=0, version=2, meta=dict(demo.meta))
    reg = NodeRegistry(tmp_path / "gateway.db")
    net = SimNetwork(1, speed=None, model=demo, firmware=(demo, v2))  # type: ignore[arg-type]
    net.register(reg)
    nid, node, st = net.node_ids[0], net.sim.nodes[0], net.node_state[0]
    cands = {(0, 1): [(1, demo.fingerprint)], (0, 2): [(2, v2.fingerprint)]}
    dec = FrameDecoder(reg, models=lambda mid, mod8: cands.get((mid, mod8), []))
    down = DownlinkEncoder(nid, None)

    def uplink():
        frame = dec.decode(net._uplink(0, st))
        dec.accept(frame)
        return frame

    def window(frame: bytes) -> None:
        node.radio.start_receive()
        net.sim.gateway.transmit(frame)
        net._close_window(0, node, st)

    try:
        boot = uplink()  # at boot: what the firmware holds
        assert boot.codec is PayloadCodec.INFO
        assert nodeinfo.parse(boot.payload) == NodeInfo(
            (1, 0, 0), (0, 1), (held_model(0, 1, demo.fingerprint), held_model(0, 2, v2.fingerprint))
        )
        assert uplink().model_version == 1
        window(down.command(0, b"\x02\x00\x09\x00"))  # 0@9: not in this firmware
        assert st.model is None and uplink().model_version == 1
        window(down.command(1, b"\x02\x00\x02\x00"))
        assert st.model == (0, 2)
        again = uplink()  # after the switch: a report naming the model it now sends with
        assert again.codec is PayloadCodec.INFO and nodeinfo.parse(again.payload).active == (0, 2)
        assert uplink().model_version == 2  # the gateway tells the versions apart by fingerprint
        window(down.command(2, b"\x03"))  # report info
        assert uplink().codec is PayloadCodec.INFO and uplink().model_version == 2
    finally:
        net.stop()
        reg.close()
