"""The driver receiving from emulated nodes over the virtual air."""

from __future__ import annotations

from datetime import UTC

import pytest

from gateway.radio.air import Link
from gateway.radio.packet import CrcState
from gateway.radio.regs import Reg
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig


def _one(sim: RadioSim, payload: bytes, node: int = 0, timeout_s: float = 5.0):
    sim.nodes[node].send(payload)
    return sim.gateway.receive(timeout_s)


@pytest.mark.parametrize("bw", [125_000, 250_000, 500_000])
@pytest.mark.parametrize("sf", [7, 8, 9, 10, 11, 12])
def test_reception_across_sf_and_bw_in_three_transactions(sf: int, bw: int) -> None:
    sim = RadioSim(nodes=1, config=LoRaConfig(sf=sf, bw_hz=bw, cr="4/6"), link=Link(path_loss_db=100))
    payload = bytes(range(sf * 3))
    sim.nodes[0].send(payload)
    before = sim.gateway.spi.transactions
    packet = sim.gateway.receive(5.0)
    assert packet is not None
    assert sim.gateway.spi.transactions - before <= 3
    assert (packet.payload, packet.sf, packet.bw_hz, packet.cr, packet.crc) == (
        payload,
        sf,
        bw,
        "4/6",
        CrcState.OK,
    )
    assert packet.rssi_dbm == pytest.approx(14 - 100, abs=1)


def test_packet_metadata() -> None:
    sim = RadioSim(nodes=1, link=Link(path_loss_db=128, snr_db=-7.25))
    start = sim.clock.monotonic()
    toa = sim.nodes[0].send(b"metadata")
    packet = sim.gateway.receive(1.0)
    assert packet is not None
    assert packet.snr_db == -7.25  # signed register, not 0x100 - 29
    assert packet.rssi_dbm == pytest.approx(14 - 128, abs=1)  # HF offset −157 and SNR < 0 correction
    assert packet.monotonic_s == pytest.approx(start + toa, abs=1e-3)
    assert packet.utc.tzinfo is UTC
    assert packet.freq_hz == 868_100_000


def test_lf_port_rssi_and_frequency_error() -> None:
    cfg = LoRaConfig(frequency_hz=433_175_000)
    sim = RadioSim(nodes=0, config=cfg, link=Link(path_loss_db=110))
    node = sim.add_node(config=LoRaConfig(frequency_hz=433_175_000 + 6_000))
    node.send(b"offset")
    packet = sim.gateway.receive(1.0)
    assert packet is not None
    assert packet.rssi_dbm == pytest.approx(14 - 110, abs=1)  # −164 offset on the LF port
    assert packet.freq_error_hz == pytest.approx(6_000, abs=100)


def test_failed_crc_is_reported_not_dropped() -> None:
    sim = RadioSim(nodes=1, link=Link(path_loss_db=90, bit_error_rate=0.05), seed=3)
    packet = _one(sim, bytes(40))
    assert packet is not None and packet.crc is CrcState.FAILED
    assert len(packet.payload) == 40 and packet.payload != bytes(40)
    assert sim.gateway.stats.crc_failed == 1


def test_node_without_crc_is_reported_absent() -> None:
    sim = RadioSim(nodes=0)
    node = sim.add_node(config=LoRaConfig(crc=False))  # arduino-LoRa's default
    node.send(b"no crc here")
    packet = sim.gateway.receive(1.0)
    assert packet is not None and packet.crc is CrcState.ABSENT and packet.payload == b"no crc here"


def test_ldro_mismatch_corrupts_as_on_the_chip() -> None:
    cfg = LoRaConfig(sf=11)  # LDRO auto: on
    sim = RadioSim(nodes=0, config=cfg)
    node = sim.add_node(config=LoRaConfig(sf=11, ldro="off"))
    node.send(b"mismatched ldro")
    packet = sim.gateway.receive(3.0)
    assert packet is not None and packet.crc is CrcState.FAILED


@pytest.mark.parametrize(
    ("node_settings", "reason"),
    [
        ({"sync_word": 0x34}, "not_heard_sync"),
        ({"sf": 8}, None),
        ({"frequency_hz": 868_300_000}, None),
        ({"frequency_hz": 868_100_000 + 40_000}, None),  # beyond a quarter of 125 kHz
        ({"bw_hz": 250_000}, None),
        ({"invert_iq_tx": True}, "not_heard_iq"),
    ],
)
def test_mismatched_settings_are_not_heard(node_settings: dict, reason: str | None) -> None:
    sim = RadioSim(nodes=0)
    node = sim.add_node(config=LoRaConfig(**node_settings))
    node.send(b"can you hear me")
    assert sim.gateway.receive(2.0) is None
    fates = sim.air.rx_stats["gateway"]
    if reason:
        assert fates == {reason: 1}
    else:
        assert not fates  # another channel altogether


def test_implicit_header_and_sf6() -> None:
    cfg = LoRaConfig(sf=6, implicit_header=True, payload_length=12, cr="4/7")
    sim = RadioSim(nodes=1, config=cfg)
    packet = _one(sim, b"twelve bytes")
    assert packet is not None
    assert (packet.payload, packet.cr, packet.crc, packet.sf) == (b"twelve bytes", "4/7", CrcState.OK, 6)


def test_equal_power_collision_loses_both() -> None:
    sim = RadioSim(nodes=2)
    t = sim.clock.monotonic() + 0.01
    sim.send_at(t, 0, b"first frame")
    sim.send_at(t + 0.005, 1, b"second frame")
    assert sim.receive_all(1.0) == []
    assert sim.air.rx_stats["gateway"]["lost_collision"] == 2


def test_capture_effect_keeps_the_stronger_frame() -> None:
    sim = RadioSim(nodes=2)
    sim.set_link(0, Link(path_loss_db=80))
    sim.set_link(1, Link(path_loss_db=87))  # 7 dB weaker
    t = sim.clock.monotonic() + 0.01
    sim.send_at(t, 0, b"strong")
    sim.send_at(t + 0.002, 1, b"weak")
    packets = sim.receive_all(1.0)
    assert [p.payload for p in packets] == [b"strong"]
    assert sim.air.rx_stats["gateway"]["lost_collision"] == 1


def test_collision_after_header_is_a_crc_error() -> None:
    sim = RadioSim(nodes=2)
    t = sim.clock.monotonic() + 0.01
    sim.send_at(t, 0, bytes(60))  # header decoded at 20.7 ms, frame lasts 113 ms
    sim.send_at(t + 0.05, 1, bytes(10))
    packets = sim.receive_all(1.0)
    assert [p.crc for p in packets] == [CrcState.FAILED]


def test_injected_loss_is_counted() -> None:
    sim = RadioSim(nodes=1, link=Link(loss=0.5), seed=7)
    packets = []
    for i in range(40):
        sim.nodes[0].send(bytes([i]))
        packets += sim.receive_all(0.05)
    fates = sim.air.rx_stats["gateway"]
    assert 0 < fates["lost_injected"] < 40
    assert len(packets) == fates["delivered"] == 40 - fates["lost_injected"]


def test_packets_the_driver_was_too_slow_for_are_counted() -> None:
    sim = RadioSim(nodes=1)
    for i in range(5):  # nobody reads the gateway meanwhile: the chip keeps only the last status
        sim.nodes[0].send(bytes([i]) * 4)
    packets = sim.receive_all(0.5)
    assert [p.payload for p in packets] == [bytes([4]) * 4]
    assert sim.gateway.stats.missed == 4


def test_below_sensitivity_not_heard() -> None:
    sim = RadioSim(nodes=1, link=Link(path_loss_db=140))  # −126 dBm: SNR −9 dB, SF7 needs −7.5
    assert _one(sim, b"far away", timeout_s=1.0) is None
    assert sim.air.rx_stats["gateway"]["lost_sensitivity"] == 1
    sim.gateway.configure(LoRaConfig(sf=9))
    sim.nodes[0].radio.configure(LoRaConfig(sf=9))
    assert _one(sim, b"far away") is not None  # SF9 reaches −12.5 dB


def test_gateway_transmits_and_resumes_receiving() -> None:
    sim = RadioSim(nodes=1)
    node = sim.nodes[0]
    node.radio.start_receive()
    sim.gateway.transmit(b"!ack")
    assert sim.gateway.stats.tx_packets == 1
    got = node.radio.receive(1.0)
    assert got is not None and got.payload == b"!ack"
    assert sim.gateway_chip.peek(Reg.OP_MODE) == 0x85
    node.radio.standby()
    assert _one(sim, b"after ack") is not None


def test_cad_and_noise_floor() -> None:
    sim = RadioSim(nodes=1)
    assert sim.gateway.cad() is False
    sim.nodes[0].send(bytes(50), wait=False)
    assert sim.gateway.cad() is True
    sim.clock.advance(0.2)
    assert sim.gateway.noise_floor_dbm() == pytest.approx(-174 + 51 + 6, abs=1)


def test_polling_without_dio0() -> None:
    sim = RadioSim(nodes=1, use_dio0=False)
    packet = _one(sim, b"polled")
    assert packet is not None and packet.payload == b"polled"


def test_gpiod_backend() -> None:
    sim = RadioSim(nodes=1, gpio_backend="gpiod")
    packet = _one(sim, b"via libgpiod")
    assert packet is not None and packet.payload == b"via libgpiod"


def test_no_packet_lost_by_the_driver_at_200_per_second() -> None:
    sim = RadioSim(nodes=0, config=LoRaConfig(bw_hz=500_000), seed=11)
    for _ in range(40):
        sim.add_node()
    rng = sim.air.rng
    t = sim.clock.monotonic() + 0.01
    sent = 0
    while sent < 400:  # two seconds at 200 packets/s, Poisson arrivals
        t += rng.expovariate(200.0)
        sim.send_at(t, sent % 40, sent.to_bytes(4, "big") + bytes(6))
        sent += 1
    packets = sim.receive_all(t - sim.clock.monotonic() + 0.5)
    fates = sim.air.rx_stats["gateway"]
    heard = fates["delivered"] + fates["delivered_crc_error"] + fates["delivered_corrupt"]
    assert len(packets) == heard and sim.gateway.stats.missed == 0
    lost = fates["lost_collision"] + fates["lost_not_listening"] + fates["lost_aborted"]
    assert heard + lost == sent == sim.air.stats["sent"]
    assert fates["lost_collision"] > 0 and fates["delivered"] > 0


def test_packet_pending_when_the_gateway_transmits_is_kept() -> None:
    sim = RadioSim(nodes=1)
    sim.nodes[0].send(b"arrived just before the ack")  # RxDone raised; nobody has read it yet
    sim.gateway.transmit(b"!ack")  # leaving RX clears the IRQ flags: the packet is read first
    packet = sim.gateway.receive(0.1)
    assert packet is not None and packet.payload == b"arrived just before the ack"
