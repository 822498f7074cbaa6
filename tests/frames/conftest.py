"""Shared fixtures: a real SQLite registry in a temporary state directory, and a mixed set of nodes."""

from __future__ import annotations

import pytest

from gateway.cli import main as cli
from gateway.frames import FrameDecoder, Node, NodeFormat, NodeRegistry, PayloadCodec

KEY = bytes(range(16))
OTHER_KEY = bytes(range(16, 32))


@pytest.fixture
def registry(tmp_path):
    with NodeRegistry.open(tmp_path / "state") as reg:
        yield reg


@pytest.fixture
def mixed_nodes() -> list[Node]:
    return [
        Node(5, "open-5"),
        Node(0x1234, "open-1234"),
        Node(0x01020304, "sec-01020304", key=KEY),
        Node(0x2A, "sec-2a", key=OTHER_KEY),
        Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3),
        Node(71, "rh-raw", format=NodeFormat.RADIOHEAD, radiohead_address=4, payload=PayloadCodec.RAW),
        Node(80, "bare-lpp", format=NodeFormat.LPP),
    ]


@pytest.fixture
def decoder(registry, mixed_nodes) -> FrameDecoder:
    """A decoder over a real registry holding ``mixed_nodes``."""
    for node in mixed_nodes:
        registry.add(node)
    return FrameDecoder(registry)


@pytest.fixture
def run(tmp_path, capsys):
    """``lora-gw --state-dir <tmp>/state ARGS`` in-process: (exit code, stdout, stderr)."""
    state = tmp_path / "state"

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--state-dir", str(state), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    _run.state = state  # type: ignore[attr-defined]
    return _run
