"""``logging.file`` that cannot be written is a one-line config error (``config check`` and ``run``, exit 2),
never an OSError traceback that systemd would restart in a loop; a writable one gets the service's lines."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.service.app import configure_logging
from gateway.service.config import parse_config

from .test_tls import make_pki

REPO = Path(__file__).resolve().parents[2]


def _bad_paths(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "plain").write_text("")
    return [
        (
            str(tmp / "missing" / "gw.log"),
            f"cannot be created: the directory {tmp / 'missing'} does not exist",
        ),
        (str(tmp), "is a directory, not a file"),
        (str(tmp / "plain" / "gw.log"), "is not a directory"),
        # sysfs takes no new files, whoever asks (root too): the permission case that holds for every user
        ("/sys/lora-gw-test.log", "is not writable: "),
    ]


def test_unwritable_log_files_are_one_line_config_errors(tmp_path):
    for path, why in _bad_paths(tmp_path):
        with pytest.raises(ConfigError) as err:
            parse_config({"logging": {"file": path}}, env={})
        msg = err.value.message
        assert msg.startswith(f"logging.file: {path} ") and why in msg and "\n" not in msg, msg


def test_the_check_leaves_nothing_behind(tmp_path):
    new = tmp_path / "new.log"
    assert parse_config({"logging": {"file": str(new)}}, env={}).logging.file == str(new)
    assert not new.exists()  # a file made by config check (maybe as root) could lock out the service user
    old = tmp_path / "old.log"
    old.write_text("kept\n")
    parse_config({"logging": {"file": str(old)}}, env={})
    assert old.read_text() == "kept\n"


def test_configure_logging_turns_a_vanished_directory_into_a_config_error(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    cfg = parse_config({"logging": {"file": str(d / "gw.log")}}, env={})
    d.rmdir()  # between the check and the start
    before = list(logging.getLogger().handlers)
    with pytest.raises(ConfigError, match=r"^logging\.file: .* the directory .* does not exist$"):
        configure_logging(cfg)
    assert logging.getLogger().handlers == before


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LORA_GW_")},
    )


def test_run_and_config_check_refuse_an_unwritable_log_file(tmp_path):
    for path, why in _bad_paths(tmp_path):
        conf = tmp_path / "gateway.toml"
        conf.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n[logging]\nfile = "{path}"\n')
        for cmd in (["config", "check", str(conf)], ["run", "--config", str(conf)]):
            r = _cli(*cmd)
            assert r.returncode == 2, r.stderr
            assert r.stderr.startswith(f"lora-gw: logging.file: {path} ") and why in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1, r.stderr


def test_service_logs_to_the_file_and_names_tls_as_mqtts(tmp_path, broker_factory):
    pki = make_pki(tmp_path)
    b = broker_factory(
        extra=(f"cafile {pki['ca']}", f"certfile {pki['server']}", f"keyfile {pki['server_key']}")
    )
    log_file = tmp_path / "logs" / "gateway.log"
    log_file.parent.mkdir()
    conf = tmp_path / "gateway.toml"
    conf.write_text(
        f"""[gateway]
id = "gwlog"
state_dir = "{tmp_path / "state"}"
[radio]
backend = "emulator"
[radio.emulator]
nodes = 1
[mqtt]
url = "mqtt://127.0.0.1:{b.port}"
ca_file = "{pki["ca"]}"
[logging]
file = "{log_file}"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORA_GW_", "NOTIFY_SOCKET"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(conf)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "connected to" not in _read(log_file):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = _read(log_file)
    url = f"mqtts://127.0.0.1:{b.port}"
    assert f"gateway gwlog running: radio emulator, broker {url}," in text, text
    assert f"mqtt: connected to {url} (Success)" in text, text
    assert "mqtt://127.0.0.1" not in text


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
