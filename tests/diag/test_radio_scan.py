"""``lora-gw diag scan``: the noise floor per channel, an interferer found where it is."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.diag.radio_util import emulator_config, run, run_json

REPO = Path(__file__).resolve().parents[2]


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB PNG, checking every chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(r[0] == 0 for r in rows)  # filter type 0
    return width, height, [r[1:] for r in rows]


@pytest.mark.parametrize("freq_hz", [868_300_000, 867_950_000, 869_525_000])
def test_scan_finds_the_interferer_at_its_frequency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], freq_hz: int
) -> None:
    cfg = emulator_config(tmp_path, interferers=[{"freq_hz": freq_hz, "rssi_dbm": -95.0}])
    code, out = run_json(
        capsys, "diag", "scan", "--config", cfg, "--from", "867", "--to", "870", "--step", "100"
    )
    assert code == 0
    channels = out["channels"]
    assert len(channels) == 31 and channels[0]["freq_mhz"] == 867.0 and channels[-1]["freq_mhz"] == 870.0
    peak = max(channels, key=lambda c: c["rssi_dbm"])
    assert abs(peak["freq_mhz"] - freq_hz / 1e6) <= 0.1 + 1e-9
    assert peak["rssi_dbm"] > out["noise_floor_dbm"] + 15
    assert -119 < out["noise_floor_dbm"] < -115  # −174 + 10·log10(125 kHz) + 6 dB ≈ −117 dBm


def test_three_mhz_in_100_khz_steps_takes_under_5_s_of_chip_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(capsys, "diag", "scan", "--emulate", "--from", "867", "--to", "870", "--step", "100")
    assert code == 0
    # 31 channels × (1 ms settling + 50 ms dwell) + SPI time at 8 MHz
    assert 31 * 0.051 <= out["chip_time_s"] < 5.0
    assert out["dwell_ms"] == 50.0


def test_busy_own_channel_fails_and_the_table_shows_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = emulator_config(tmp_path, interferers=[{"freq_hz": 868_100_000, "rssi_dbm": -80.0}])
    code, out, _ = run(
        capsys, "diag", "scan", "--config", cfg, "--from", "867.9", "--to", "868.3", "--step", "100"
    )
    assert code == 1
    lines = out.splitlines()
    bar = {line.split()[0]: line.split()[-1] for line in lines if line[:3] == "868" or line[:3] == "867"}
    assert len(bar["868.100"]) > 2 * len(bar["868.300"])
    assert "FAIL: the gateway's channel 868.100 MHz" in out and "fix:" in out


def test_png_is_a_bar_chart_with_the_peak_at_the_interferer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = emulator_config(tmp_path, interferers=[{"freq_hz": 868_500_000, "rssi_dbm": -90.0}])
    png = tmp_path / "scan.png"
    code, out = run_json(
        capsys,
        "diag",
        "scan",
        "--config",
        cfg,
        "--from",
        "868",
        "--to",
        "869",
        "--step",
        "100",
        "--png",
        str(png),
    )
    assert code == 0 and out["png"] == str(png)
    width, height, rows = read_png(png)
    assert width > 11 and height > 50

    def bar_top(x: int) -> int:  # first non-white, non-grid pixel from the top in column x
        for y, row in enumerate(rows):
            px = row[3 * x : 3 * x + 3]
            if px[2] > px[0] + 60 or px[0] > px[2] + 60:  # a blue or red bar
                return y
        return height

    from gateway.diag.png import LEFT

    bar_w = (width - LEFT - 8) // 11
    tops = [bar_top(LEFT + i * bar_w + bar_w // 2) for i in range(11)]
    assert tops.index(min(tops)) == 5  # 868.5 MHz is the sixth channel
    assert len(set(tops[:5] + tops[6:])) == 1


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--from", "870", "--to", "867"], "--to"),
        (["--from", "867", "--to", "868", "--step", "0"], "--step"),
        (["--from", "100", "--to", "101"], "--from"),
        (["--from", "867", "--to", "868", "--dwell", "0"], "--dwell"),
    ],
)
def test_bad_scan_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], word: str) -> None:
    code, out, err = run(capsys, "diag", "scan", "--emulate", *args)
    assert code == 2 and word in err and out == ""


def test_scan_through_a_subprocess(tmp_path: Path) -> None:
    cfg = emulator_config(tmp_path, interferers=[{"freq_hz": 868_200_000, "rssi_dbm": -100.0}])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "diag",
            "scan",
            "--config",
            cfg,
            "--from",
            "868",
            "--to",
            "868.4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("868.")]
    assert [r[0] for r in rows] == ["868.000", "868.100", "868.200", "868.300", "868.400"]
    assert max(rows, key=lambda r: float(r[1]))[0] == "868.200"
