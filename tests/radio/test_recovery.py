"""Self-healing: a chip that reset, lost its mode, hung after a header, or whose DIO0 edge was missed."""

from __future__ import annotations

import logging

import pytest

from gateway.radio.air import Link
from gateway.radio.packet import CrcState
from gateway.radio.regs import Reg
from gateway.radio.sim import RadioSim


def _send_and_receive(sim: RadioSim, payload: bytes, timeout_s: float = 5.0):
    sim.nodes[0].send(payload)
    return sim.gateway.receive(timeout_s)


def test_recovers_after_an_emulated_chip_reset(caplog: pytest.LogCaptureFixture) -> None:
    sim = RadioSim(nodes=1)
    sim.gateway_chip.power_on_reset()  # brown-out: FSK mode, standby, reset registers
    assert _send_and_receive(sim, b"lost while reset", 1.0) is None
    with caplog.at_level(logging.WARNING):
        assert sim.gateway.receive(3.0) is None  # idle → health check → re-initialise
    assert sim.gateway.stats.recovery_reasons == {"chip_reset": 1}
    assert "chip_reset" in caplog.text and "gateway" in caplog.text
    assert sim.gateway_chip.peek(Reg.OP_MODE) == 0x85
    packet = _send_and_receive(sim, b"after the reset")
    assert packet is not None and packet.payload == b"after the reset"


def test_recovers_when_the_mode_was_changed_behind_its_back() -> None:
    sim = RadioSim(nodes=1)
    sim.gateway_chip.xfer2([0x80 | Reg.OP_MODE, 0x81])  # something put the chip in standby
    assert sim.gateway.receive(3.0) is None
    assert sim.gateway.stats.recovery_reasons == {"mode_lost": 1}
    assert _send_and_receive(sim, b"back") is not None


def test_missed_dio0_edge_is_noticed_and_the_packet_still_delivered() -> None:
    sim = RadioSim(nodes=1)
    sim.gateway_gpio.drop_edges[4] = 1  # the next rising edge of DIO0 never reaches the handler
    sim.nodes[0].send(b"edge lost")
    assert sim.gateway_gpio.edges_dropped == 1
    assert sim.gateway_chip.dio_level(0)  # DIO0 stays high until RxDone is cleared
    packet = sim.gateway.receive(3.0)  # found by the idle health check
    assert packet is not None and packet.payload == b"edge lost"
    assert sim.gateway.stats.recovery_reasons == {"dio0_missed": 1}
    assert not sim.gateway_chip.dio_level(0)
    assert _send_and_receive(sim, b"edges work again", 0.5) is not None


def test_receiver_hung_after_a_header_is_restarted() -> None:
    sim = RadioSim(nodes=1)
    sim.gateway_chip.stall_after_header = True
    assert _send_and_receive(sim, b"stalls the modem", 1.0) is None
    assert _send_and_receive(sim, b"not heard while hung", 1.0) is None
    assert sim.gateway.receive(3.0) is None
    assert sim.gateway.stats.recovery_reasons == {"rx_stalled": 1}
    assert sim.air.rx_stats["gateway"]["lost_stalled"] == 2
    assert _send_and_receive(sim, b"restarted") is not None


def test_healthy_radio_is_left_alone() -> None:
    sim = RadioSim(nodes=1)
    assert sim.gateway.receive(10.0) is None
    assert sim.gateway.check_health() is True
    assert sim.gateway.stats.recoveries == 0


@pytest.mark.parametrize("second_corrupt", [False, True])
def test_packet_finishing_between_status_read_and_flag_clear_is_not_lost(second_corrupt: bool) -> None:
    """A second RxDone landing after transaction 1 is cleared by transaction 2; MISO reveals it."""
    sim = RadioSim(nodes=2, seed=5)
    if second_corrupt:
        sim.set_link(1, Link(bit_error_rate=0.05))
    t = sim.clock.monotonic() + 0.01
    sim.send_at(t, 0, b"first")
    sim.send_at(t + 0.2, 1, b"second")
    spi = sim.gateway.spi
    real_transfer = spi.transfer
    state = {"armed": True}

    def slow_transfer(data):
        out = real_transfer(data)
        if state["armed"] and data[0] == Reg.FIFO_TX_BASE_ADDR:  # right after the first status read
            state["armed"] = False
            sim.clock.advance(0.3)  # the driver stalls long enough for the second packet to finish
        return out

    spi.transfer = slow_transfer  # type: ignore[method-assign]
    packets = sim.receive_all(1.0)
    assert len(packets) == 2 and packets[0].payload == b"first"
    assert [p.crc for p in packets] == [CrcState.OK, CrcState.FAILED if second_corrupt else CrcState.OK]
    assert second_corrupt or packets[1].payload == b"second"
    assert sim.gateway.stats.missed == 0
