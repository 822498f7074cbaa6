"""Acknowledgements through the emulated air: the window, inverted IQ, the node's checks (manual clock)."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.downlink.commands import DownlinkStore
from gateway.downlink.dutycycle import DutyCycleLedger, sub_bands
from gateway.downlink.manager import Downlinker, DownlinkSettings, Uplink
from gateway.downlink.scheduler import TxQueue, TxRunner
from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, NodeRegistry
from gateway.frames.downlink import DownlinkDecoder, DownlinkEncoder
from gateway.radio.sim import LoRaConfig, RadioSim

KEY = bytes(range(16))
NODE = 0x2A
GW_CFG = LoRaConfig(invert_iq_tx=True)  # gateway: uplink IQ in, inverted IQ out (LoRaWAN practice)
NODE_CFG = LoRaConfig(invert_iq_rx=True)  # node: normal IQ out, listens for inverted IQ


@pytest.fixture
def rig(tmp_path):
    sim = RadioSim(nodes=0, config=GW_CFG)
    node = sim.add_node("n1", config=NODE_CFG)
    other = sim.add_node("n2", config=NODE_CFG)
    reg = NodeRegistry(tmp_path / "gateway.db")
    reg.add(Node(node_id=NODE, name="n1", key=KEY))
    db = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    wall = [1_700_000_000.0]
    ledger = DutyCycleLedger(db, sub_bands("EU868", 1.0), wall=lambda: wall[0])
    store = DownlinkStore(db, wall=lambda: wall[0])
    queue = TxQueue()
    dl = Downlinker(reg.get, store, ledger, queue, sim.gateway.config.time_on_air_s, DownlinkSettings())
    runner = TxRunner(sim.gateway, sim.clock, queue)
    yield sim, node, other, reg, dl, runner, ledger
    reg.close()
    sim.close()


def _uplink(sim, node, enc, ack=True):
    node.send(enc.encode_lpp([(1, "temperature", 20.5)], ack_requested=ack))
    pkt = sim.gateway.receive(0.5)
    assert pkt is not None
    return pkt


def _serve_until(runner, clock, t):
    while clock.monotonic() < t:
        runner.receive(t - clock.monotonic())


def test_ack_reaches_node_inside_window(rig):
    sim, node, other, reg, dl, runner, _ = rig
    enc = FrameEncoder(NODE, KEY)
    dec = FrameDecoder(reg)
    pkt = _uplink(sim, node, enc)
    frame = dec.decode(pkt.payload)
    assert frame.ack_requested
    dl.committed(Uplink(NODE, frame.fcnt, True, pkt.monotonic_s, pkt.freq_hz))
    due = pkt.monotonic_s + 1.0
    node.radio.start_receive()
    other.radio.start_receive()
    _serve_until(runner, sim.clock, due + 0.2)
    got = node.radio.receive(0.2)
    assert got is not None, sim.air.rx_stats
    # TX start on the emulator's clock = the node's RxDone − time on air
    start = got.monotonic_s - GW_CFG.time_on_air_s(len(got.payload))
    assert abs(start - due) <= 0.001
    down = DownlinkDecoder(NODE, KEY).decode(got.payload)
    assert down.acked_fcnt == frame.fcnt and down.fcnt == 0 and down.command == b""
    assert runner.stats.sent == 1 and runner.stats.missed == 0
    dl.poll_results()
    assert dl.acks_sent == 1


def test_uplink_receiver_does_not_hear_inverted_iq(rig):
    """Datasheet RegInvertIQ (0x33) bit 6 RX / bit 0 TX: an uplink-IQ receiver must not demodulate an
    inverted-IQ transmission; the gateway's own downlink is thus unheard by a normal-IQ listener."""
    sim, node, *_ = rig
    listener = sim.add_node("normal-iq", config=LoRaConfig())
    listener.radio.start_receive()
    node.radio.start_receive()
    sim.gateway.transmit(DownlinkEncoder(NODE, KEY).ack(0, 1))
    assert node.radio.receive(0.1) is not None
    assert listener.radio.receive(0.1) is None
    assert sim.air.rx_stats["normal-iq"]["not_heard_iq"] == 1


def test_missed_window_is_skipped_not_sent_late(rig):
    sim, node, _other, reg, dl, runner, _ = rig
    enc = FrameEncoder(NODE, KEY)
    pkt = _uplink(sim, node, enc)
    frame = FrameDecoder(reg).decode(pkt.payload)
    sim.clock.advance(1.5)  # the core was too slow: the window (RxDone + 1 s) has passed
    dl.committed(Uplink(NODE, frame.fcnt, True, pkt.monotonic_s, pkt.freq_hz))
    node.radio.start_receive()
    sent_before = sim.air.stats["sent"]
    runner.receive(0.1)
    assert runner.stats.missed == 1 and runner.stats.sent == 0
    assert sim.air.stats["sent"] == sent_before  # nothing went on air


def test_uplinks_received_while_not_transmitting(rig):
    sim, node, _other, reg, dl, runner, _ = rig
    enc = FrameEncoder(NODE, KEY)
    pkt = _uplink(sim, node, enc)
    frame = FrameDecoder(reg).decode(pkt.payload)
    dl.committed(Uplink(NODE, frame.fcnt, True, pkt.monotonic_s, pkt.freq_hz))
    # a second node sends during the 1 s wait before the window: the radio thread still receives it
    n3 = sim.add_node("n3", config=NODE_CFG)
    t = sim.clock.monotonic()
    sim.send_at(t + 0.3, n3, FrameEncoder(0x77).encode(b"x"))
    got = []
    while sim.clock.monotonic() < t + 1.3:
        p = runner.receive(0.1)
        if p is not None:
            got.append(p)
    assert len(got) == 1 and runner.stats.sent == 1


def test_forged_and_replayed_downlinks_rejected():
    enc = DownlinkEncoder(NODE, KEY)
    dec = DownlinkDecoder(NODE, KEY)
    f0 = enc.ack(0, 5)
    assert dec.decode(f0).acked_fcnt == 5
    with pytest.raises(FrameError) as e:
        dec.decode(f0)
    assert e.value.reason == "replay"
    forged = bytearray(enc.ack(1, 6))
    forged[-6] ^= 1
    with pytest.raises(FrameError) as e:
        dec.decode(bytes(forged))
    assert e.value.reason == "bad_mic"
    other_key = DownlinkEncoder(NODE, bytes(16)).ack(1, 6)
    with pytest.raises(FrameError) as e:
        dec.decode(other_key)
    assert e.value.reason == "bad_mic"
    # an uplink-direction frame (Dir = 0) replayed at the node does not verify as a downlink
    up = FrameEncoder(NODE, KEY).encode(
        b"\x00\x01", frame_type=__import__("gateway").frames.FrameType.ACK, fcnt=1
    )
    with pytest.raises(FrameError):
        dec.decode(up)
    assert dec.decode(enc.ack(1, 6)).fcnt == 1


def test_configured_downlink_channel_then_back_to_receive(rig):
    sim, node, _other, reg, _dl, runner, ledger = rig
    from dataclasses import replace

    from gateway.downlink.commands import DownlinkStore
    from gateway.downlink.manager import Downlinker, DownlinkSettings

    dl = Downlinker(
        reg.get,
        DownlinkStore(ledger.db, wall=lambda: 1_700_000_000.0),
        ledger,
        runner.queue,
        GW_CFG.time_on_air_s,
        DownlinkSettings(frequency_hz=869_525_000),
    )
    enc = FrameEncoder(NODE, KEY)
    pkt = _uplink(sim, node, enc)
    frame = FrameDecoder(reg).decode(pkt.payload)
    dl.committed(Uplink(NODE, frame.fcnt, True, pkt.monotonic_s, pkt.freq_hz))
    assert ledger.used_s(869_525_000) > 0 and ledger.used_s(868_100_000) == 0  # charged where it is sent
    node.radio.configure(replace(NODE_CFG, frequency_hz=869_525_000))
    node.radio.start_receive()
    _serve_until(runner, sim.clock, pkt.monotonic_s + 1.2)
    got = node.radio.receive(0.2)
    assert got is not None and got.freq_hz == 869_525_000
    assert DownlinkDecoder(NODE, KEY).decode(got.payload).acked_fcnt == frame.fcnt
    assert sim.gateway.config.frequency_hz == 868_100_000  # back on the uplink channel
    node.radio.configure(NODE_CFG)
    node.radio.standby()
    assert _uplink(sim, node, enc, ack=False).freq_hz == 868_100_000


def test_repeated_frame_is_acknowledged_again(rig):
    """The node missed its acknowledgement and repeats the frame (same counter): the gateway rejects the
    copy as a duplicate (stored once) but acknowledges it again, with a new downlink counter."""
    from gateway.downlink.manager import repeated_uplink
    from gateway.pipeline.pipeline import Pipeline

    sim, node, _other, reg, dl, runner, _ = rig
    pipe = Pipeline(FrameDecoder(reg))
    repeats = []
    pipe.on_duplicate = repeats.append
    enc = FrameEncoder(NODE, KEY)
    frame = enc.encode_lpp([(1, "temperature", 20.5)], ack_requested=True)
    node.send(frame)
    pkt = sim.gateway.receive(0.5)
    _accepted, decoded = pipe.process(pkt)
    pipe.accept(decoded)
    dl.committed(Uplink(NODE, decoded.fcnt, True, pkt.monotonic_s, pkt.freq_hz))
    _serve_until(runner, sim.clock, pkt.monotonic_s + 1.2)  # the node was not listening
    assert runner.stats.sent == 1
    node.send(frame)  # the same bytes again
    pkt2 = sim.gateway.receive(0.5)
    assert pipe.process(pkt2) is None and pipe.drops["duplicate"] == 1 and repeats == [pkt2]
    up = repeated_uplink(pkt2.payload, pkt2.monotonic_s, pkt2.freq_hz)
    assert up == Uplink(NODE, decoded.fcnt & 0xFFFF, True, pkt2.monotonic_s, pkt2.freq_hz)
    dl.committed(up)
    node.radio.start_receive()
    _serve_until(runner, sim.clock, pkt2.monotonic_s + 1.2)
    got = node.radio.receive(0.2)
    assert got is not None
    down = DownlinkDecoder(NODE, KEY).decode(got.payload)
    assert down.acked_fcnt == decoded.fcnt and down.fcnt == 1
    assert repeated_uplink(FrameEncoder(NODE, KEY).encode(b"x"), 0.0, 0) is None  # no ack asked: none
