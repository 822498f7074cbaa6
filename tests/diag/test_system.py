"""Host checks: SPI device, outbox (read-only), clock, systemd unit, models — each verdict and its fix."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from pathlib import Path

from gateway.diag import system
from gateway.diag.system import Host, Output
from gateway.service.config import parse_config
from gateway.sinks.outbox import Outbox, OutboxSettings
from tests.diag.system_helpers import NO_SYSTEMD, make_state, systemd_host


def cfg(**radio):
    return parse_config({"gateway": {"id": "gw"}, "radio": radio, "outbox": {"max_rows": 100}})


# ------------------------------------------------------------------------------------------ spi_device


def test_spi_not_applicable_with_the_emulator():
    c = system.spi_device_check(cfg(backend="emulator"), NO_SYSTEMD)
    assert c.ok is None and "emulated" in c.detail


def test_spi_missing_device_lists_the_others(tmp_path):
    (tmp_path / "spidev0.1").write_text("")
    c = system.spi_device_check(cfg(spi_device=str(tmp_path / "spidev0.0")), Host(dev_dir=tmp_path))
    assert c.ok is False
    assert str(tmp_path / "spidev0.1") in c.cause and "radio.spi_device" in c.fix


def test_spi_switched_off_points_at_raspi_config_and_the_boot_config(tmp_path):
    boot = tmp_path / "config.txt"
    boot.write_text("[all]\n#dtparam=spi=on\n")
    host = Host(dev_dir=tmp_path, boot_configs=(boot,))
    c = system.spi_device_check(cfg(spi_device=str(tmp_path / "spidev0.0")), host)
    assert c.ok is False and "switched off" in c.cause
    assert "raspi-config" in c.fix and "dtoverlay" in c.fix
    assert "no dtparam=spi=on" in c.detail


def test_spi_regular_file_is_not_a_device(tmp_path):
    f = tmp_path / "spidev0.0"
    f.write_text("")
    c = system.spi_device_check(cfg(spi_device=str(f)), Host(dev_dir=tmp_path))
    assert c.ok is False and "not a device node" in c.cause


def test_spi_accessible_device_passes(tmp_path):
    c = system.spi_device_check(cfg(spi_device="/dev/null"), Host(dev_dir=tmp_path))
    assert c.ok is True and "/dev/null read/write ok" in c.detail


def test_spi_permission_denied_names_the_group_and_the_fix(tmp_path):
    host = Host(dev_dir=tmp_path, access=lambda path, mode: False)
    c = system.spi_device_check(cfg(spi_device="/dev/null"), host)
    assert c.ok is False
    assert "may not open /dev/null" in c.cause or "added to group" in c.cause
    assert "usermod -aG" in c.fix or "udev" in c.fix or "log out" in c.fix


# --------------------------------------------------------------------------------------------- outbox


def test_outbox_missing_database_is_reported_and_not_created(tmp_path):
    db = tmp_path / "gateway.db"
    c = system.outbox_check(cfg(), system.read_outbox(db))  # a fresh state directory: nothing to check
    assert c.ok is None and "state init" in c.detail
    assert not db.exists() and list(tmp_path.iterdir()) == []
    c = system.outbox_check(cfg(), system.read_outbox(tmp_path / "nowhere" / "gateway.db"))
    assert c.ok is False and "no gateway database" in c.cause and "state_dir" in c.fix


def test_outbox_lost_database_fails_with_the_way_out(tmp_path):
    make_state(tmp_path)
    db = tmp_path / "gateway.db"
    os.truncate(db, 0)
    c = system.outbox_check(cfg(), system.read_outbox(db))
    assert c.ok is False and "is empty (0 bytes" in c.cause and "lora-gw state init" in c.fix
    db.unlink()
    c = system.outbox_check(cfg(), system.read_outbox(db))
    assert c.ok is False and "is missing but this state directory had one" in c.cause


def test_outbox_below_the_free_space_floor_says_frames_are_not_stored(tmp_path):
    make_state(tmp_path)
    f = system.read_outbox(tmp_path / "gateway.db")
    small = dataclasses.replace(f, free_bytes=10 * 1024 * 1024)  # below the default 32 MB floor
    c = system.outbox_check(cfg(), small)
    assert c.ok is False and "min_free_mb" in c.cause and "not being stored" in c.cause


def test_outbox_healthy_reports_depth_age_check_and_disk(tmp_path):
    make_state(tmp_path / "s")
    db = tmp_path / "s" / "gateway.db"
    con = sqlite3.connect(db)
    created = int((time.time() - 120) * 1000)
    row = (1, 0, created, 0, b"x", 0, 0, 868_100_000, 0, 7, 125_000, 5, 0)
    con.executemany(
        "INSERT INTO outbox (node_id, fcnt, created_ms, kind, payload, rssi_dbm10, snr_db4, freq_hz,"
        " freq_error_hz, sf, bw_hz, cr, crc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [row] * 3,
    )
    con.commit()
    con.close()
    f = system.read_outbox(db)
    assert (f.depth, f.quick_check) == (3, "ok") and 119 <= f.oldest_age_s <= 200
    c = system.outbox_check(cfg(), f)
    assert c.ok is True and "3 frames waiting" in c.detail and "oldest 2.0 min" in c.detail
    # near outbox.max_rows (100 here) the oldest frames are about to be dropped
    c = system.outbox_check(cfg(), system.OutboxFacts(db, True, 1, 95, 1.0, "ok", 0, 10**10))
    assert c.ok is False and "max_rows" in c.cause


def test_outbox_read_beside_a_running_writer_leaves_its_locks_alone(tmp_path):
    """Doctor in the same process as the service: the writer keeps committing after doctor's look."""
    db = tmp_path / "gateway.db"
    writer = Outbox(db, OutboxSettings())
    try:
        before = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        f = system.read_outbox(db)
        assert f.quick_check == "ok" and f.depth == 0
        writer.commit()
        assert writer.count() == 0 and before == "wal"
    finally:
        writer.close()


def test_outbox_damaged_database_fails_quick_check(tmp_path):
    db = tmp_path / "gateway.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA page_size = 1024")
    con.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, created_ms INTEGER, payload BLOB)")
    con.executemany(
        "INSERT INTO outbox (created_ms, payload) VALUES (?, ?)", [(i, os.urandom(300)) for i in range(200)]
    )
    con.execute("CREATE INDEX outbox_created ON outbox (created_ms)")
    con.commit()
    con.close()
    data = bytearray(db.read_bytes())
    data[3 * 1024 : 3 * 1024 + 64] = b"\xff" * 64  # a b-tree page header in the table's pages
    db.write_bytes(bytes(data))
    c = system.outbox_check(cfg(), system.read_outbox(db))
    assert c.ok is False and "damaged" in c.cause and ".recover" in c.fix


def test_low_disk_fails(tmp_path):
    f = system.OutboxFacts(tmp_path / "gateway.db", True, 1, 0, None, "ok", 0, 5_000_000)
    c = system.outbox_check(cfg(), f)
    assert c.ok is False and "5 MB free" in c.cause


# ------------------------------------------------------------------------------------ clock, systemd


def test_clock_not_applicable_without_systemd():
    assert system.clock_sync_check(NO_SYSTEMD).ok is None


def test_clock_states():
    def check(out):
        return system.clock_sync_check(systemd_host({"timedatectl": out}))

    assert check(Output(0, "NTPSynchronized=yes\nNTP=yes\n", "")).ok is True
    off = check(Output(0, "NTPSynchronized=no\nNTP=no\n", ""))
    assert off.ok is False and off.fix == "sudo timedatectl set-ntp true"
    waiting = check(Output(0, "NTPSynchronized=no\nNTP=yes\n", ""))
    assert waiting.ok is False and "timesync-status" in waiting.fix
    assert check(None).ok is None  # not installed
    assert check(Output(None, "", "timedatectl did not answer within 3 s")).ok is None


def unit(**p):
    text = "".join(f"{k}={v}\n" for k, v in p.items())
    return system.systemd_unit_check(systemd_host({"systemctl": Output(0, text, "")}))


def test_systemd_unit_states():
    assert system.systemd_unit_check(NO_SYSTEMD).ok is None
    assert unit(LoadState="not-found", ActiveState="inactive").ok is None
    ok = unit(LoadState="loaded", ActiveState="active", SubState="running", NRestarts=2, Result="success")
    assert ok.ok is True and "2 restarts" in ok.detail
    dead = unit(
        LoadState="loaded", ActiveState="failed", SubState="failed", NRestarts=10, Result="start-limit-hit"
    )
    assert dead.ok is False and "failed too often" in dead.cause and "reset-failed" in dead.fix
    crash = unit(LoadState="loaded", ActiveState="failed", Result="exit-code", ExecMainStatus=2)
    assert crash.ok is False and "exit status 2" in crash.cause and "journalctl -u lora-gw" in crash.fix
    loop = unit(
        LoadState="loaded", ActiveState="activating", SubState="auto-restart", NRestarts=3, Result="watchdog"
    )
    assert loop.ok is False and "watchdog" in loop.cause
    stopped = unit(LoadState="loaded", ActiveState="inactive", SubState="dead", Result="success")
    assert stopped.ok is False and "enable --now" in stopped.fix


# -------------------------------------------------------------------------------------------- models


def test_models_verified_and_a_flipped_byte_names_the_file(tmp_path):
    state = make_state(tmp_path / "s")
    good = system.models_check(state)
    assert good.ok is True and "1 verified" in good.detail
    path = next((state / "models").glob("m*-v*.npz"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    bad = system.models_check(state)
    assert bad.ok is False and path.name in bad.cause and path.name in bad.detail
    assert "lora-gw model install" in bad.fix


def test_models_none_installed_is_not_applicable(tmp_path):
    c = system.models_check(tmp_path)
    assert c.ok is None and not (tmp_path / "models").exists()


def test_state_dir_is_not_created(tmp_path):
    c = parse_config({"gateway": {"id": "gw", "state_dir": str(tmp_path / "nope")}})
    assert system.state_dir(c) == Path(tmp_path / "nope") and not (tmp_path / "nope").exists()
