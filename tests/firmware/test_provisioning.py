"""Provisioning against a simulated node on a pseudo-terminal: the host opens the pty's device path
with pyserial (as it opens /dev/ttyUSB0), the simulated node answers on the other end."""

from __future__ import annotations

import errno
import os
import pty
import tty
from pathlib import Path

import pytest
import serial

from firmware_tools.provisioning import NodeSettings, Provisioner, ProvisionError, open_port
from firmware_tools.provisioning.protocol import Field, FrameReader, MsgType, frame, key_check_value
from firmware_tools.provisioning.sim import SimulatedNode

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SETTINGS = NodeSettings(
    node_id=0x1234,
    root_key=KEY,
    key_epoch=2,
    frequency_hz=868_300_000,
    spreading_factor=9,
    bandwidth_hz=125_000,
    coding_rate=5,
    sync_word=0x12,
    tx_power_dbm=14,
    model_id=3,
    model_version=2,
    interval_s=300,
)


@pytest.fixture
def line():
    """(device path, node-side fd): a pty pair in raw mode."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


@pytest.fixture
def connect(line):
    opened = []

    def _connect(timeout_s=0.15, retries=2, **switches):
        device, fd = line
        node = SimulatedNode(fd, **switches).start()
        port = open_port(device, 115200)
        opened.append((node, port))
        return node, Provisioner(port, device, timeout_s=timeout_s, retries=retries)

    yield _connect
    for node, port in opened:
        node.stop()
        port.close()


def test_provisioning_round_trip_writes_and_verifies_every_value(connect):
    node, prov = connect()
    verified = prov.provision(SETTINGS)
    assert [v.field for v in verified] == [f for f, _ in SETTINGS.fields()]
    assert node.stored[Field.ROOT_KEY] == KEY
    assert node.stored[Field.NODE_ID] == 0x1234
    assert node.stored[Field.FREQUENCY_HZ] == 868_300_000
    assert node.stored[Field.TX_POWER_DBM] == 14 and node.stored[Field.INTERVAL_S] == 300
    assert dict((v.field, v.value) for v in verified)[Field.ROOT_KEY] == key_check_value(KEY)
    assert prov.node_text == "sim-node 1.0"


def test_open_node_writes_no_key(connect):
    node, prov = connect()
    prov.provision(NodeSettings(node_id=7, root_key=None))
    assert Field.ROOT_KEY not in node.stored and node.stored[Field.NODE_ID] == 7


def test_silent_node_is_no_answer_after_the_retries(connect):
    node, prov = connect(silent=True)
    with pytest.raises(ProvisionError) as err:
        prov.provision(SETTINGS)
    assert err.value.reason == "no_answer"
    assert "HELLO: no answer after 3 tries" in str(err.value) and "\n" not in str(err.value)
    assert node.received == 3  # the request and two retries


def test_nak_names_the_field_and_the_nodes_reason(connect):
    _node, prov = connect(nak_field=Field.SPREADING_FACTOR)
    with pytest.raises(ProvisionError) as err:
        prov.provision(SETTINGS)
    assert err.value.reason == "nak"
    assert "SET SPREADING_FACTOR: the node answered NAK bad_value" in str(err.value)


def test_a_value_the_node_refuses_is_a_nak_with_its_reason(connect):
    _node, prov = connect()
    with pytest.raises(
        ProvisionError, match=r"NAK bad_value: SPREADING_FACTOR: spreading factor outside 6\.\.12"
    ):
        prov.provision(NodeSettings(node_id=1, root_key=None, spreading_factor=13))


def test_answers_with_bad_crcs_are_a_crc_failure(connect):
    _node, prov = connect(bad_crc=-1)
    with pytest.raises(ProvisionError) as err:
        prov.provision(SETTINGS)
    assert err.value.reason == "bad_crc"
    assert "3 answers failed their CRC" in str(err.value)


def test_a_few_damaged_answers_are_retried_and_provisioning_succeeds(connect):
    node, prov = connect(bad_crc=2)
    prov.provision(SETTINGS)
    assert node.stored[Field.MODEL_ID] == 3


def test_host_frame_damaged_on_the_line_is_nakd_by_the_node_and_resent(connect, line):
    node, prov = connect()
    damaged = bytearray(frame(MsgType.HELLO, 0, b"\x01"))
    damaged[-1] ^= 1
    prov.port.write(bytes(damaged))  # the node answers NAK bad_crc with seq 0 ...
    prov.provision(SETTINGS)  # ... which the host's own HELLO (seq 0) takes as "send again"
    assert node.stored[Field.NODE_ID] == 0x1234


@pytest.mark.parametrize("switches", [{"version": 2}, {"refuse_version": True}])
def test_incompatible_protocol_version(connect, switches):
    _node, prov = connect(**switches)
    with pytest.raises(ProvisionError) as err:
        prov.provision(SETTINGS)
    assert err.value.reason == "version"


def test_read_back_catches_a_value_the_node_stored_wrongly(connect):
    _node, prov = connect(corrupt=Field.ROOT_KEY)
    with pytest.raises(ProvisionError, match="ROOT_KEY: the key's check value differs"):
        prov.provision(SETTINGS)


def test_port_that_does_not_exist():
    with pytest.raises(ProvisionError) as err:
        open_port("/dev/ttyNOPE-fw12", 115200)
    assert err.value.reason == "port_missing" and "no such serial port" in str(err.value)


def test_port_busy_when_another_program_holds_it(line):
    device, _fd = line
    holder = serial.Serial(device, 115200, exclusive=True)
    try:
        with pytest.raises(ProvisionError) as err:
            open_port(device, 115200)
        assert err.value.reason == "port_busy"
    finally:
        holder.close()


def test_permission_denied_names_the_dialout_group(line):
    device, _fd = line
    if os.geteuid() != 0:
        os.chmod(device, 0)
        opener = None
    else:  # root opens anything: hand pyserial's own open failure (errno EACCES) to the same code

        def opener(*_a, **_k):
            raise serial.SerialException(errno.EACCES, f"could not open port {device}: Permission denied")

    with pytest.raises(ProvisionError) as err:
        open_port(device, 115200, opener=opener)
    assert err.value.reason == "permission" and "dialout" in str(err.value)


def test_frame_reader_resynchronises_after_garbage_and_damage():
    good = frame(MsgType.ACK, 9, b"\x01\x02")
    bad = bytearray(good)
    bad[4] ^= 0xFF
    reader = FrameReader()
    out = reader.feed(b"\x00\xa5\xff" + bytes(bad) + good[:3])
    out += reader.feed(good[3:])
    last = out[-1]
    assert last is not None and (last.type, last.seq, last.payload) == (MsgType.ACK, 9, b"\x01\x02")
    assert None in out and reader.crc_errors >= 1


def test_the_worked_example_in_the_docs_is_valid_frames():
    doc = (Path(__file__).parents[2] / "docs" / "provisioning.md").read_text()
    lines = [ln for ln in doc.splitlines() if ln.startswith(("host → node  a5", "node → host  a5"))]
    assert len(lines) >= 10
    for ln in lines:
        hex_part = ln.split("  ")[1].split("   ")[0] if "   " in ln[13:] else ln[13:]
        data = bytes.fromhex(hex_part.strip())
        out = FrameReader().feed(data)
        assert len(out) == 1 and out[0] is not None, ln
        assert frame(out[0].type, out[0].seq, out[0].payload) == data, ln
