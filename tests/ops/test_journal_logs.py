"""Logs under systemd: ``lora-gw run`` with stderr connected where ``$JOURNAL_STREAM`` says writes one
``<N>logger: message`` line per event, with no timestamp of its own; elsewhere the format is unchanged."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.service.journal import JournalFormatter, syslog_priority, under_journald

ROOT = Path(__file__).resolve().parents[2]


def test_priorities_and_one_line_per_record() -> None:
    assert [syslog_priority(x) for x in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
    try:
        raise ValueError("bad frame")
    except ValueError:
        rec = logging.LogRecord(
            "gateway.x", logging.ERROR, __file__, 1, "node %08x: %s", (42, "boom"), sys.exc_info()
        )
    line = JournalFormatter().format(rec)
    assert line.startswith("<3>gateway.x: node 0000002a: boom | Traceback") and "\n" not in line
    assert "ValueError: bad frame" in line


def test_journal_stream_must_name_our_stderr(tmp_path: Path) -> None:
    f = tmp_path / "err"
    with f.open("w") as fh:
        st = os.fstat(fh.fileno())
        assert under_journald({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh.fileno())
        assert not under_journald({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fh.fileno())
        assert not under_journald({}, fh.fileno())


def _run_service(broker, tmp_path: Path, journal: bool) -> list[str]:
    state = tmp_path / ("state-j" if journal else "state")
    state.mkdir(mode=0o700)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "j"\nstate_dir = "{state}"\n[radio]\nbackend = "emulator"\n'
        f'[mqtt]\nurl = "{broker.url}"\n[logging]\nlevel = "info"\n'
    )
    err = tmp_path / ("journal.txt" if journal else "stderr.txt")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = str(ROOT)
    with err.open("w") as fh:
        if journal:
            st = os.fstat(fh.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        p = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)], stderr=fh, env=env
        )
        deadline = time.monotonic() + 15
        while "running" not in err.read_text() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    return [line for line in err.read_text().splitlines() if line]


def test_lora_gw_run_under_journald(broker, tmp_path: Path) -> None:
    lines = _run_service(broker, tmp_path, journal=True)
    assert any(re.match(r"^<6>gateway\.service\.app: gateway j running: radio emulator", x) for x in lines), (
        lines
    )
    assert all(re.match(r"^<[0-7]>[\w.]+: \S", x) for x in lines), lines
    assert not any(re.search(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d", x.split(": ", 1)[0]) for x in lines)


def test_elsewhere_the_stderr_format_is_left_alone() -> None:
    from gateway.service.journal import use_journal_format

    root = logging.getLogger("ops-journal-test")
    handler = logging.StreamHandler()
    plain = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(plain)
    root.addHandler(handler)
    try:
        assert not use_journal_format(root, {})  # no JOURNAL_STREAM: a terminal, a pipe, cron
        assert not use_journal_format(root, {"JOURNAL_STREAM": "1:2"})  # it names another stream
        assert handler.formatter is plain
    finally:
        root.removeHandler(handler)
