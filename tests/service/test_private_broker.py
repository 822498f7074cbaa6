"""The demo's and benchmarks' private Mosquitto: a port taken between the probe and the bind."""

from __future__ import annotations

import socket

import pytest

from gateway.service import broker
from gateway.service.broker import PrivateMosquitto, _answers


def test_a_port_taken_after_the_probe_is_given_up_for_another(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # another program holds it (it even answers)
        port = taken.getsockname()[1]
        probes = iter([port])
        real = broker._free_port
        monkeypatch.setattr(broker, "_free_port", lambda: next(probes, None) or real())
        mq = PrivateMosquitto()
        try:
            assert mq.port != port
            assert mq.proc.poll() is None and _answers("127.0.0.1", mq.port)
        finally:
            mq.stop()


def test_another_start_failure_is_one_line(monkeypatch, tmp_path):
    bad = tmp_path / "mosquitto"
    bad.write_text("#!/bin/sh\necho 'Error: Unable to open config file' >&2\nexit 3\n")
    bad.chmod(0o755)
    monkeypatch.setattr(broker.shutil, "which", lambda _name: str(bad))
    with pytest.raises(broker.BrokerUnavailable, match="did not start: Error: Unable to open config file"):
        PrivateMosquitto()
