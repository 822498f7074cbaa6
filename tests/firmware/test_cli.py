"""``lora-fw`` commands end to end: a real registry in a temporary state directory, real gcc, a
simulated node or a scrolling debug console on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import termios
import threading
import time
import tty
from importlib import resources

import pytest

from firmware_tools import cli
from firmware_tools.provisioning.protocol import Field
from firmware_tools.provisioning.sim import SimulatedNode
from gateway.codec import ModelStore, demo_model
from gateway.codec.csvio import read_csv
from gateway.frames import FrameDecoder, Node, NodeRegistry
from gateway.frames.encoder import FrameEncoder
from gateway.frames.types import PayloadCodec

from .conftest import CODEC_DATA


@pytest.fixture
def run(tmp_path, capsys):
    state = tmp_path / "state"

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(
            [*argv, "--state-dir", str(state)]
            if argv[0] in {"keygen", "provision", "console"}
            else list(argv)
        )
        out = capsys.readouterr()
        return code, out.out, out.err

    _run.state = state  # type: ignore[attr-defined]
    return _run


@pytest.fixture
def line():
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def test_every_command_has_examples_and_option_defaults():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"export-c", "keygen", "provision", "console"}
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "examples:" in text.split("options:")[-1], name
        for action in p._actions:
            if action.help and action.dest != "help":
                assert "default" in action.help or "required" in action.help, (name, action.dest)


def test_keygen_registers_a_secured_node_and_its_c_initialiser_builds_accepted_frames(
    run, tmp_path, gcc_path
):
    code, out, err = run("keygen", "--node", "0x1234", "--name", "garden")
    assert code == 0, err
    with NodeRegistry.open(run.state) as reg:
        node = reg.find("garden")
    assert node.node_id == 0x1234 and node.secured and node.key is not None
    assert f"root key: {node.key.hex()}" in out
    assert out.count(node.key.hex()) == 1  # printed once as hex (and once more as C bytes)
    init = next(line for line in out.splitlines() if line.startswith("static const lgw_node_t"))
    # The initialiser compiles against the exported header and makes frames the gateway accepts.
    assert cli.main(["export-c", "--lpp", "--out", str(tmp_path / "c")]) == 0
    prog = tmp_path / "c" / "main.c"
    prog.write_text(
        '#include <stdio.h>\n#include "lgw_node.h"\n' + init + "\n"
        "int main(void) { uint8_t p[16], f[64]; lgw_lpp_t l; int i, n;\n"
        "  lgw_lpp_init(&l, p, 16); lgw_lpp_add(&l, 1, LGW_LPP_TEMPERATURE, 215);\n"
        "  n = lgw_build_frame_payload(&LGW_NODE, 0, 0, LGW_CODEC_LPP, 0, p, l.len, f, 64);\n"
        '  for (i = 0; i < n; i++) printf("%02x", f[i]);\n  printf("\\n");\n  return n < 0; }\n'
    )
    exe = tmp_path / "c" / "main"
    c = tmp_path / "c"
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-Wall",
            "-Werror",
            f"-I{c}",
            str(prog),
            str(c / "lgw_node.c"),
            str(c / "lgw_aes_ref.c"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    frame_hex = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()
    with NodeRegistry.open(run.state) as reg:
        frame = FrameDecoder(reg).decode(bytes.fromhex(frame_hex))
    assert frame.node_name == "garden" and frame.encrypted and frame.values[0].value == 21.5


def test_keygen_for_an_existing_node_is_a_one_line_error(run):
    assert run("keygen", "--node", "7")[0] == 0
    code, out, err = run("keygen", "--node", "7")
    assert code == 1 and out == "" and err.startswith("lora-fw: ") and err.count("\n") == 1


def test_export_c_writes_the_files_and_refuses_bad_input(run, tmp_path):
    code, out, _ = run("export-c", "--model", "demo", "--out", str(tmp_path / "m"), "--provisioning")
    assert code == 0
    assert {p.rsplit("/", 1)[-1] for p in out.split()} == {
        "lgw_node.h",
        "lgw_node.c",
        "lgw_aes_ref.c",
        "lgw_prov.h",
        "lgw_prov.c",
    }
    header = (tmp_path / "m" / "lgw_node.h").read_text()
    assert "#define LGW_CHANNELS 5" in header and "#define LGW_SAMPLES_PER_FRAME 16" in header
    code, _, err = run("export-c", "--model", str(tmp_path / "nope.npz"))
    assert code == 1 and err.count("\n") == 1 and "nope.npz" in err
    code, _, err = run("export-c")
    assert code == 1 and "--model" in err


def test_provision_sends_the_registry_key_and_the_config_radio_settings(run, line, tmp_path):
    device, fd = line
    run("keygen", "--node", "0x42", "--name", "shed")
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[radio]\nfrequency_hz = 868300000\nsf = 10\nbw_hz = 250000\ncr = "4/7"\nsync_word = 0x34\n'
    )
    node = SimulatedNode(fd).start()
    try:
        code, out, err = run(
            "provision",
            "--port",
            device,
            "--node",
            "shed",
            "--config",
            str(config),
            "--interval-s",
            "120",
            "--timeout-s",
            "0.2",
        )
    finally:
        node.stop()
    assert code == 0, err
    with NodeRegistry.open(run.state) as reg:
        key = reg.find("shed").key
    assert node.stored[Field.ROOT_KEY] == key and node.stored[Field.NODE_ID] == 0x42
    assert (node.stored[Field.FREQUENCY_HZ], node.stored[Field.SPREADING_FACTOR]) == (868_300_000, 10)
    assert (node.stored[Field.BANDWIDTH_HZ], node.stored[Field.CODING_RATE]) == (250_000, 7)
    assert (node.stored[Field.SYNC_WORD], node.stored[Field.INTERVAL_S]) == (0x34, 120)
    assert node.stored[Field.MODEL_ID] == 0xFF
    assert "provisioned" in out and key.hex() not in out


def test_provision_errors_are_one_line(run, line):
    device, fd = line
    run("keygen", "--node", "9")
    code, _, err = run("provision", "--port", "/dev/ttyNOPE-fw12", "--node", "9")
    assert code == 1 and err.count("\n") == 1 and "no such serial port" in err
    code, _, err = run("provision", "--port", device, "--node", "unknown-node")
    assert code == 1 and err.count("\n") == 1
    node = SimulatedNode(fd, silent=True).start()
    try:
        code, _, err = run(
            "provision", "--port", device, "--node", "9", "--timeout-s", "0.05", "--retries", "1"
        )
    finally:
        node.stop()
    assert code == 1 and err.count("\n") == 1 and "no answer after 2 tries" in err


def test_console_decodes_frame_dumps_as_they_scroll_by(run, line, capsys):
    device, fd = line
    key = bytes(range(16))
    with NodeRegistry.open(run.state) as reg:
        reg.add(Node(5, "open-5"))
        reg.add(Node(0x2A, "sec-2a", key=key))
    ModelStore(run.state).install(resources.files("gateway.codec").joinpath("data", "weather-demo.npz"))
    model = demo_model()
    q, _ = read_csv(CODEC_DATA / "weather-400.csv", model.schema)
    lpp_frame = FrameEncoder(5).encode(bytes.fromhex("03670110056700ff"), codec=PayloadCodec.LPP)
    model_frame = FrameEncoder(0x2A, key).encode_model(model, q[:16])
    bad = bytearray(lpp_frame)
    bad[-1] ^= 1
    spaced = " ".join(f"{b:02X}" for b in model_frame)
    lines = [
        "boot: sensor ok, t=123456",
        f"TX {lpp_frame.hex()} len={len(lpp_frame)}",
        f"tx frame: {spaced}",
        f"TX {bytes(bad).hex()}",
        f"TX {lpp_frame.hex()}",  # the same frame again: a duplicate for the gateway
    ]

    def scroll() -> None:
        # pyserial flushes the input queue when it opens the port: start once it has configured the
        # line (115200 bit/s instead of the pty's default), and a moment later.
        deadline = time.monotonic() + 5
        while termios.tcgetattr(fd)[4] != termios.B115200 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.1)
        os.write(fd, ("\r\n".join(lines) + "\r\n").encode())

    writer = threading.Thread(target=scroll)
    writer.start()
    code, out, err = run("console", "--port", device, "--lines", str(len(lines)))
    writer.join()
    assert code == 0, err
    shown = out.splitlines()
    assert shown[0] == lines[0]
    assert shown[1].startswith(lines[1] + "  => node 5 (open-5) fcnt 0: ch3 temperature 27.2 °C")
    values = model.values(q[:16])
    assert (
        f"=> node 42 (sec-2a) fcnt 0: 16 samples (model {model.key}): temperature={values[0][0]:g};"
        in shown[2]
    )
    assert "=> rejected: bad_crc" in shown[3]
    assert "[duplicate: the gateway would reject it]" in shown[4]
    assert "3 frames decoded, 1 rejected" in err
