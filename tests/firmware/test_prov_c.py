"""The exported C node side of provisioning (lora-fw export-c --provisioning) against the real host,
over a pseudo-terminal: the same protocol the simulated node speaks."""

from __future__ import annotations

import os
import pty
import subprocess
import tty
from pathlib import Path

import pytest

from firmware_tools.export_c import export_provisioning
from firmware_tools.provisioning import NodeSettings, Provisioner, ProvisionError, open_port
from firmware_tools.provisioning.protocol import Field

from . import cbuild

PROV_NODE = Path(__file__).with_name("prov_node.c")


@pytest.fixture(scope="module")
def c_node(tmp_path_factory, gcc_path) -> Path:
    out = tmp_path_factory.mktemp("prov")
    export_provisioning(out)
    exe = out / "node"
    for san in ([], cbuild.SANITIZE):
        objs = []
        for name in ("lgw_prov.c", "lgw_aes_ref.c"):
            obj = out / f"{name}{len(san)}.o"
            subprocess.run(["gcc", *cbuild.STRICT, *san, "-c", str(out / name), "-o", str(obj)], check=True)
            objs.append(str(obj))
        subprocess.run(["gcc", "-O2", *san, f"-I{out}", str(PROV_NODE), *objs, "-o", str(exe)], check=True)
    return exe


@pytest.fixture
def node_line(c_node):
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([str(c_node)], stdin=master, stdout=master, stderr=subprocess.PIPE, text=True)
    yield os.ttyname(slave), proc
    proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


def test_c_node_is_provisioned_and_verified_by_the_host(node_line):
    device, proc = node_line
    settings = NodeSettings(
        node_id=0xCAFE01,
        root_key=bytes(range(16)),
        key_epoch=3,
        frequency_hz=915_000_000,
        spreading_factor=8,
        bandwidth_hz=500_000,
        coding_rate=6,
        sync_word=0x34,
        tx_power_dbm=17,
        model_id=3,
        model_version=12,
        interval_s=900,
    )
    port = open_port(device, 115200)
    try:
        prov = Provisioner(port, device, timeout_s=0.5, retries=1)
        prov.provision(settings)
        with pytest.raises(ProvisionError, match=r"spreading factor outside 6\.\.12"):
            prov.set(Field.SPREADING_FACTOR, 13)
    finally:
        port.close()
    proc.kill()
    dump = dict(line.split(" ", 1) for line in proc.stderr.read().splitlines())
    assert prov.node_text == "c-node 1"
    assert dump["node_id"] == str(0xCAFE01) and dump["key"] == bytes(range(16)).hex()
    assert (dump["frequency_hz"], dump["sf"], dump["bw_hz"], dump["cr"]) == ("915000000", "8", "500000", "6")
    assert (dump["tx_power_dbm"], dump["model_version"], dump["interval_s"]) == ("17", "12", "900")
