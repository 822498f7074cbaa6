"""The scenario helper the demo, the service and the benchmarks build on."""

from __future__ import annotations

import threading

from gateway.radio.air import Link
from gateway.radio.packet import CrcState, RxPacket
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig


def test_nodes_send_through_their_drivers_and_the_gateway_hears_them() -> None:
    sim = RadioSim(nodes=3)
    assert [n.name for n in sim.nodes] == ["node1", "node2", "node3"]
    for i, node in enumerate(sim.nodes):
        assert node.send(f"reading {i}".encode()) > 0
        packet = sim.gateway.receive(1.0)
        assert isinstance(packet, RxPacket) and packet.payload == f"reading {i}".encode()
    assert all(n.radio.stats.tx_packets == 1 for n in sim.nodes)
    assert sim.air.rx_stats["gateway"]["delivered"] == 3
    sim.close()


def test_link_quality_per_node_and_scheduled_sends() -> None:
    sim = RadioSim(nodes=2, config=LoRaConfig(sf=9))
    sim.set_link("node2", Link(path_loss_db=125, snr_db=-3.0))
    now = sim.clock.monotonic()
    sim.send_at(now + 1.0, 1, b"late")
    sim.send_at(now + 0.5, 0, b"early")
    packets = sim.receive_all(2.0)
    assert [p.payload for p in packets] == [b"early", b"late"]
    assert packets[1].snr_db == -3.0 and packets[1].rssi_dbm < packets[0].rssi_dbm
    assert packets[0].monotonic_s < packets[1].monotonic_s


def test_gateway_read_from_another_thread_in_scaled_time() -> None:
    sim = RadioSim(nodes=2, speed=5.0)  # virtual time at 5 × real time: 20 ms virtual = 4 ms real
    got: list[RxPacket] = []
    stop = threading.Event()
    delivered: list[float] = []

    def on_packet(packet: RxPacket) -> None:
        delivered.append(sim.clock.monotonic())
        got.append(packet)

    sim.gateway.on_packet = on_packet
    reader = threading.Thread(target=sim.gateway.run, args=(stop, 0.2), daemon=True)
    reader.start()
    ends = []
    for i in range(6):
        start = sim.clock.monotonic()
        ends.append(start + sim.nodes[i % 2].send(bytes([i]) * 8))
        sim.clock.sleep(0.05)
    deadline = sim.clock.monotonic() + 2.0
    while len(got) < 6 and sim.clock.monotonic() < deadline:
        sim.clock.sleep(0.05)
    stop.set()
    reader.join(timeout=5)
    assert [p.payload[0] for p in got] == list(range(6))
    assert all(p.crc is CrcState.OK for p in got)
    # RxDone time from the DIO0 edge: never before the transmission ended, never after the packet was
    # handed over, and close to the end (in scaled real time the emulated edge itself may come a few ms
    # of real time late on a busy machine: 0.1 s virtual is 20 ms real at 5×)
    for packet, end, handed in zip(got, ends, delivered, strict=True):
        assert end - 1e-6 <= packet.monotonic_s <= handed
        assert packet.monotonic_s - end < 0.1
