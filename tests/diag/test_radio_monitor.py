"""``lora-gw diag monitor``: packets with their verdicts, and the loss the emulator injected."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.diag.packet_log import COLUMNS, DailyCsv
from gateway.diag.radio_monitor import PacketRow
from gateway.frames import Reason
from tests.diag.radio_util import emulator_config, run

REPO = Path(__file__).resolve().parents[2]


def ndjson(out: str) -> tuple[list[dict], dict]:
    objs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert objs[-1]["type"] == "summary"
    assert all(o["type"] == "packet" for o in objs[:-1])
    return objs[:-1], objs[-1]


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_monitor_shows_the_injected_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loss: float
) -> None:
    cfg = emulator_config(tmp_path, nodes=1, interval_s=2.0, loss=loss, seed=7)
    code, out, _ = run(capsys, "diag", "monitor", "--config", cfg, "--seconds", "800", "--json")
    assert code == 0
    packets, summary = ndjson(out)
    (node,) = summary["nodes"]
    expected = node["last_fcnt"] - node["first_fcnt"] + 1
    assert expected > 300  # one frame every 2 s ± 20 %
    assert node["received"] == len(packets) and node["lost"] == expected - len(packets)
    # binomial: 3.5 standard deviations of the loss ratio over ~400 frames
    assert abs(node["loss_ratio"] - loss) <= 3.5 * (max(loss * (1 - loss), 0.0) / expected) ** 0.5 + 1e-9
    if loss == 0:
        assert node["lost"] == 0
    counters = [p["fcnt"] for p in packets]
    assert counters == sorted(counters) and all(p["verdict"] == "accepted" for p in packets)


def test_packet_objects_carry_the_radio_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, nodes=2, interval_s=5.0, path_loss_db=128.0)
    code, out, _ = run(capsys, "diag", "monitor", "--config", cfg, "--seconds", "30", "--json")
    packets, summary = ndjson(out)
    assert code == 0 and packets
    p = packets[0]
    assert set(p) >= {
        "utc",
        "node",
        "node_id",
        "fcnt",
        "rssi_dbm",
        "snr_db",
        "freq_error_hz",
        "crc",
        "verdict",
    }
    assert p["node"] in ("sim-1", "sim-2") and p["crc"] == "ok" and p["freq_mhz"] == 868.1
    assert p["rssi_dbm"] == pytest.approx(14 - 128.0, abs=0.5)  # node power − path loss
    assert p["snr_db"] == pytest.approx(14 - 128.0 + 117.03, abs=0.3)
    assert {n["node"] for n in summary["nodes"]} == {"sim-1", "sim-2"}


@pytest.mark.parametrize(
    ("policy", "verdicts"),
    [("drop_failed", {"radio_crc_failed"}), ("check_frame", {r.value for r in Reason})],
)
def test_collided_packets_get_the_pipelines_drop_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, verdicts: set[str]
) -> None:
    # six nodes every 0.5 s with 46 ms frames collide often; a collision after the header is a CRC error
    cfg = emulator_config(tmp_path, radio={"crc_policy": policy}, nodes=6, interval_s=0.5, seed=2)
    code, out, _ = run(capsys, "diag", "monitor", "--config", cfg, "--seconds", "60", "--json")
    packets, summary = ndjson(out)
    assert code == 0
    failed = [p for p in packets if p["crc"] == "failed"]
    # drop_failed: the radio CRC decides; check_frame: the frame decoder rejects the corrupted bytes itself
    assert failed and all(p["verdict"] in verdicts for p in failed)
    assert all(p["verdict"] == "accepted" for p in packets if p["crc"] == "ok")
    assert sum(n for v, n in summary["verdicts"].items() if v != "accepted") == len(failed)


def test_nothing_heard_exits_1_with_cause_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, nodes=1, interval_s=5.0, path_loss_db=160.0)  # far below sensitivity
    code, out, _ = run(capsys, "diag", "monitor", "--config", cfg, "--seconds", "20")
    assert code == 1
    assert "0 packets in 20 s" in out and "FAIL: no packet heard" in out and "fix:" in out


def test_table_and_csv_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = emulator_config(tmp_path, nodes=2, interval_s=4.0, loss=0.25, seed=3)
    base = tmp_path / "logs" / "packets.csv"
    code, out, _ = run(capsys, "diag", "monitor", "--config", cfg, "--seconds", "120", "--csv", str(base))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "node"]
    data = [line for line in lines if line.split() and line.split()[-1] == "accepted"]
    files = list(base.parent.glob("packets-*.csv"))
    assert len(files) == 1 and files[0].name == f"packets-{datetime.now(UTC).date().isoformat()}.csv"
    rows = files[0].read_text().splitlines()
    assert rows[0].split(",") == list(COLUMNS) and len(rows) - 1 == len(data)
    summary = lines[lines.index("") + 1 :]
    assert summary[0].split() == ["node", "received", "lost", "loss"]
    lost = sum(int(line.split()[2]) for line in summary[2:4])
    assert lost > 0  # a quarter of the frames vanish on the air


def _row(when: datetime, fcnt: int) -> PacketRow:
    return PacketRow(
        when,
        0x5101,
        "sim-1",
        fcnt,
        -90.0,
        9.5,
        120.0,
        868_100_000,
        7,
        125_000,
        "4/5",
        "ok",
        "accepted",
        b"\x01\x02",
    )


def test_csv_rotates_at_utc_midnight_and_appends_to_an_existing_day(tmp_path: Path) -> None:
    t = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    log = DailyCsv(tmp_path / "pk.csv")
    log.write(_row(t, 1))
    log.write(_row(t + timedelta(seconds=2), 2))
    log.close()
    log = DailyCsv(tmp_path / "pk.csv")
    log.write(_row(t + timedelta(seconds=3), 3))
    log.close()
    first, second = tmp_path / "pk-2026-03-01.csv", tmp_path / "pk-2026-03-02.csv"
    assert len(first.read_text().splitlines()) == 2
    day2 = second.read_text().splitlines()
    assert day2[0].startswith("utc,") and len(day2) == 3 and day2[1].endswith(",accepted,0102")


def test_monitor_ndjson_through_a_subprocess(tmp_path: Path) -> None:
    cfg = emulator_config(tmp_path, nodes=1, interval_s=3.0)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "diag",
            "monitor",
            "--config",
            cfg,
            "--seconds",
            "30",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    packets, summary = ndjson(proc.stdout)
    assert len(packets) == summary["packets"] >= 8


def test_unregistered_nodes_are_identified_by_their_verified_frames() -> None:
    from gateway.diag.radio_monitor import Monitor
    from gateway.frames import FrameEncoder
    from gateway.radio.sim import RadioSim

    sim = RadioSim(nodes=1)
    enc = FrameEncoder(0x2A)
    mon = Monitor([])  # no registry: every frame is unknown_node, but its CRC still names the node
    rows = []
    try:
        for fcnt in range(5):
            frame = enc.encode_lpp([(1, "temperature", 21.5)])
            if fcnt != 3:  # counter 3 never reaches the air: lost
                sim.send_at(sim.clock.monotonic(), 0, frame)
                rows += [mon.handle(p) for p in sim.receive_all(0.5)]
    finally:
        sim.close()
    assert [(r.node_id, r.fcnt, r.verdict) for r in rows] == [(0x2A, n, "unknown_node") for n in (0, 1, 2, 4)]
    assert mon.summary(1.0)["nodes"] == [
        {
            "node_id": 0x2A,
            "node": "0x2a",
            "received": 4,
            "lost": 1,
            "loss_ratio": 0.2,
            "first_fcnt": 0,
            "last_fcnt": 4,
        }
    ]
