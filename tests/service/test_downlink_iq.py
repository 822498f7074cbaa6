"""The gateway's own transmissions use the IQ polarity the nodes listen with: inverted by default
(``[radio] downlink_invert_iq``), on the real chip's path (``lora_config``) as on the emulator's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.errors import ConfigError
from gateway.radio import regs
from gateway.radio.regs import Reg
from gateway.radio.sim import RadioSim
from gateway.service.config import parse_config
from gateway.service.radio import SimNetwork, lora_config


def test_the_real_chips_config_transmits_inverted_and_receives_normal_by_default() -> None:
    cfg = lora_config(parse_config({}, env={}).radio)
    assert cfg.invert_iq_tx is True and cfg.invert_iq_rx is False
    off = lora_config(parse_config({"radio": {"downlink_invert_iq": False}}, env={}).radio)
    assert off.invert_iq_tx is False and off.invert_iq_rx is False


def test_a_non_boolean_value_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"radio\.downlink_invert_iq") as e:
        parse_config({"radio": {"downlink_invert_iq": "yes"}}, env={})
    assert "\n" not in str(e.value)


def test_the_driver_writes_both_iq_registers_for_a_downlink_from_the_configured_chip() -> None:
    """The configured driver (as ``open_sx1276`` builds it) on the register-level emulator."""
    sim = RadioSim(nodes=0, config=lora_config(parse_config({}, env={}).radio))
    try:
        chip = sim.gateway_chip
        sim.gateway.transmit(b"ack", wait=False)
        assert chip.peek(Reg.INVERT_IQ2) == regs.INVERT_IQ2_INVERTED
        assert not regs.INVERT_IQ_TX_OFF.get(chip.peek(Reg.INVERT_IQ))  # bit 0 clear: TX inverted
        sim.gateway.wait_tx_done(1.0)
        assert chip.peek(Reg.INVERT_IQ2) == regs.INVERT_IQ2_NORMAL  # receiving uplinks again
    finally:
        sim.close()


@pytest.mark.parametrize("inverted", [True, False])
def test_simulated_nodes_listen_with_the_polarity_the_gateway_transmits(inverted: bool) -> None:
    radio = parse_config({"radio": {"downlink_invert_iq": inverted}}, env={}).radio
    net = SimNetwork(1, speed=None, config=lora_config(radio))  # type: ignore[arg-type]
    try:
        node = net.sim.nodes[0]
        node.radio.start_receive()
        net.sim.gateway.transmit(b"downlink")
        got = node.radio.receive(1.0)
        assert got is not None and got.payload == b"downlink"
        # and a node of the other polarity hears nothing: the setting decides
        other = net.sim.add_node("other", config=replace(lora_config(radio), invert_iq_rx=not inverted))
        other.radio.start_receive()
        net.sim.gateway.transmit(b"again")
        assert other.radio.receive(0.3) is None
    finally:
        net.stop()
