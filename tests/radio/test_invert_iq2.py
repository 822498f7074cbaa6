"""RegInvertIQ2 (0x3B, LoRa page) follows the IQ polarity of the direction in use.

The datasheet documents only RegInvertIQ (0x33: bit 6 inverts the receiver). Semtech's reference driver
(LoRaMac-node, sx1276.c: SX1276SetRx and SX1276Send) writes RegInvertIQ together with RegInvertIQ2:
0x19 (RFLR_INVERTIQ2_ON) when that direction's IQ is inverted, 0x1D (RFLR_INVERTIQ2_OFF, the reset value)
when it is not; arduino-LoRa's enableInvertIQ/disableInvertIQ write the same pairs (0x66/0x19,
0x27/0x1D). The emulator demodulates a direction whose two registers disagree with neither polarity.
"""

from __future__ import annotations

import pytest

from gateway.radio import regs
from gateway.radio.emulator import iq_polarity
from gateway.radio.regs import Mode, Reg
from gateway.radio.sim import LoRaConfig, RadioSim

GW_CFG = LoRaConfig(invert_iq_tx=True)  # a gateway: normal IQ in, inverted IQ out
NODE_CFG = LoRaConfig(invert_iq_rx=True)  # a node: normal IQ out, inverted IQ in


@pytest.mark.parametrize(
    ("inverted", "iq2", "expected"),
    [
        (True, 0x19, True),  # both registers inverted: inverted
        (False, 0x1D, False),  # both normal (the reset values): normal
        (True, 0x1D, None),  # RegInvertIQ alone: neither
        (False, 0x19, None),  # RegInvertIQ2 alone: neither
        (False, 0x00, None),
    ],
)
def test_a_direction_is_inverted_only_when_both_registers_say_so(
    inverted: bool, iq2: int, expected: bool | None
) -> None:
    assert iq_polarity(inverted, iq2) is expected


def test_the_register_values_are_semtechs() -> None:
    assert (Reg.INVERT_IQ, Reg.INVERT_IQ2) == (0x33, 0x3B)
    assert (regs.INVERT_IQ2_INVERTED, regs.INVERT_IQ2_NORMAL) == (0x19, 0x1D)
    assert regs.RESET_LORA[Reg.INVERT_IQ2] == 0x1D  # the reset value is the normal one


def test_gateway_transmits_with_0x19_and_receives_again_with_0x1d() -> None:
    sim = RadioSim(nodes=0, config=GW_CFG)
    try:
        chip = sim.gateway_chip
        assert chip.peek(Reg.INVERT_IQ2) == 0x1D  # receiving normal-IQ uplinks
        sim.gateway.transmit(b"downlink", wait=False)
        assert chip.op_mode == Mode.TX
        assert chip.peek(Reg.INVERT_IQ2) == 0x19  # set before the TX mode write, as Semtech's Send does
        assert not regs.INVERT_IQ_TX_OFF.get(chip.peek(Reg.INVERT_IQ))  # bit 0 clear: TX inverted
        sim.gateway.wait_tx_done(1.0)
        assert chip.op_mode == Mode.RXCONTINUOUS
        assert chip.peek(Reg.INVERT_IQ2) == 0x1D
    finally:
        sim.close()


def test_node_transmits_with_0x1d_and_listens_with_0x19() -> None:
    sim = RadioSim(nodes=0, config=GW_CFG)
    try:
        node = sim.add_node("n1", config=NODE_CFG)
        assert node.chip.peek(Reg.INVERT_IQ2) == 0x19
        node.send(b"uplink", wait=False)  # a Class A node: no wait, its window opens later
        assert node.chip.op_mode == Mode.TX and node.chip.peek(Reg.INVERT_IQ2) == 0x1D
        assert sim.gateway.receive(2.0) is not None  # the gateway hears the normal-IQ uplink
        node.radio.start_receive()  # the receive window: back to the inverted-IQ value
        assert node.chip.peek(Reg.INVERT_IQ2) == 0x19
        sim.gateway.transmit(b"ack")
        got = node.radio.receive(1.0)
        assert got is not None and got.payload == b"ack"
    finally:
        sim.close()


def test_inverted_iq_downlink_is_heard_only_with_both_registers_set() -> None:
    """A transmitter whose RegInvertIQ2 is left at 0x1D (the bug this fixes) reaches no receiver."""
    sim = RadioSim(nodes=0, config=GW_CFG)
    try:
        node = sim.add_node("n1", config=NODE_CFG)
        normal = sim.add_node("normal", config=LoRaConfig())
        for listener in (node, normal):
            listener.radio.start_receive()
        gw = sim.gateway
        real_write = gw._write

        def forget_iq2(reg: int, value: int) -> int:  # the old driver: never touched 0x3B on TX
            return real_write(reg, regs.INVERT_IQ2_NORMAL if reg == Reg.INVERT_IQ2 else value)

        gw._write = forget_iq2  # type: ignore[method-assign]
        gw.transmit(b"lost")
        assert node.radio.receive(0.2) is None and normal.radio.receive(0.2) is None
        assert sim.air.rx_stats["n1"] == {"not_heard_iq": 1}
        assert sim.air.rx_stats["normal"] == {"not_heard_iq": 1}
        gw._write = real_write  # type: ignore[method-assign]
        gw.transmit(b"heard")
        got = node.radio.receive(1.0)
        assert got is not None and got.payload == b"heard"
        assert normal.radio.receive(0.2) is None  # a normal-IQ receiver never hears a downlink
        assert sim.air.rx_stats["n1"]["delivered"] == 1
    finally:
        sim.close()


def test_a_receiver_with_only_reginvertiq_set_hears_neither_polarity() -> None:
    sim = RadioSim(nodes=0, config=GW_CFG)
    try:
        node = sim.add_node("n1", config=NODE_CFG)
        node.radio.start_receive()
        node.chip.xfer2([regs.WRITE | Reg.INVERT_IQ2, regs.INVERT_IQ2_NORMAL])  # bit 6 set, 0x3B normal
        sim.gateway.transmit(b"inverted")
        other = sim.add_node("n2", config=LoRaConfig())
        other.send(b"normal")
        assert node.radio.receive(0.5) is None
        assert sim.air.rx_stats["n1"] == {"not_heard_iq": 2}
    finally:
        sim.close()


def test_transmit_with_inverted_iq_costs_two_more_transactions() -> None:
    """Eleven with one polarity both ways (tests/radio/test_strict_fakes.py); thirteen for a gateway:
    RegInvertIQ2 to 0x19 before TX and back to 0x1D on the way to receive."""
    sim = RadioSim(nodes=0, config=GW_CFG)
    try:
        before = sim.gateway.spi.transactions
        sim.gateway.transmit(b"downlink")
        assert sim.gateway.spi.transactions - before == 13
    finally:
        sim.close()
