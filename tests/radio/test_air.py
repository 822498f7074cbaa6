"""Virtual-air rules that the driver tests do not already cover."""

from __future__ import annotations

import pytest

from gateway.radio.air import Link, VirtualAir
from gateway.radio.packet import CrcState
from gateway.radio.regs import Reg
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig


def test_longer_than_max_payload_length_is_a_header_error() -> None:
    sim = RadioSim(nodes=1)
    sim.gateway_chip.xfer2([0x80 | Reg.MAX_PAYLOAD_LENGTH, 8])
    sim.nodes[0].send(bytes(9))
    assert sim.gateway.receive(0.5) is None
    assert sim.air.rx_stats["gateway"]["header_error"] == 1
    sim.nodes[0].send(bytes(8))
    assert sim.gateway.receive(0.5) is not None


@pytest.mark.parametrize(
    ("gateway", "node", "expected"),
    [
        # implicit header: the receiver's own CRC, length and coding rate must match the sender's
        ({"crc": True}, {"crc": False}, CrcState.FAILED),
        ({"crc": False}, {"crc": True}, CrcState.ABSENT),
        ({"cr": "4/5"}, {"cr": "4/8"}, CrcState.FAILED),
        ({"payload_length": 12}, {"payload_length": 10}, CrcState.FAILED),
    ],
)
def test_implicit_header_mismatches(gateway: dict, node: dict, expected: CrcState) -> None:
    base = {"implicit_header": True, "payload_length": 10}
    sim = RadioSim(nodes=0, config=LoRaConfig(**(base | gateway)))
    sim.add_node(config=LoRaConfig(**(base | node)))
    sim.nodes[0].send(b"0123456789")
    packet = sim.gateway.receive(0.5)
    assert packet is not None and packet.crc is expected
    if expected is CrcState.ABSENT:
        assert packet.payload == b"0123456789"  # the sender's CRC bytes are simply not checked


def test_explicit_sender_to_implicit_receiver_and_back() -> None:
    sim = RadioSim(nodes=0, config=LoRaConfig(implicit_header=True, payload_length=10))
    sim.add_node(config=LoRaConfig())  # explicit header
    sim.nodes[0].send(b"0123456789")
    packet = sim.gateway.receive(0.5)
    assert packet is not None and packet.crc is CrcState.FAILED  # header symbols read as payload
    sim2 = RadioSim(nodes=0)
    sim2.add_node(config=LoRaConfig(implicit_header=True, payload_length=10))
    sim2.nodes[0].send(b"0123456789")
    assert sim2.gateway.receive(0.5) is None
    assert sim2.air.rx_stats["gateway"]["header_error"] == 1


def test_receiver_leaving_rx_mid_frame_loses_it() -> None:
    sim = RadioSim(nodes=1)
    sim.nodes[0].send(bytes(40), wait=False)
    sim.clock.advance(0.03)
    sim.gateway.cad(timeout_s=0.1)  # leaves RX for a CAD while the frame is on the air
    assert sim.gateway.receive(0.5) is None
    assert sim.air.rx_stats["gateway"]["lost_not_listening"] == 1


def test_aborted_transmission_is_lost() -> None:
    sim = RadioSim(nodes=1)
    sim.nodes[0].send(bytes(40), wait=False)
    sim.clock.advance(0.03)
    sim.nodes[0].radio.standby()  # the node gives up mid-frame
    assert sim.gateway.receive(0.5) is None
    assert sim.air.rx_stats["gateway"]["lost_aborted"] == 1


@pytest.mark.parametrize("bw", [7800, 10400, 15600, 20800, 31250, 41700, 62500])
def test_narrow_bandwidths_with_the_errata_frequency_shift(bw: int) -> None:
    sim = RadioSim(nodes=1, config=LoRaConfig(sf=7, bw_hz=bw))
    sim.nodes[0].send(b"narrow")
    packet = sim.gateway.receive(10.0)
    assert packet is not None and packet.payload == b"narrow" and packet.bw_hz == bw
    assert abs(packet.freq_error_hz) < 62  # RX Frf raised by the bandwidth; within one Frf step


def test_link_is_per_direction() -> None:
    air = VirtualAir()
    a, b = air.add_radio("a"), air.add_radio("b")
    air.set_link(a, b, Link(path_loss_db=100), both_ways=False)
    assert air.link(a, b).path_loss_db == 100 and air.link(b, a) == air.default_link
    with pytest.raises(ValueError):
        air.add_radio("a")
    with pytest.raises(ValueError):
        Link(loss=1.5)
