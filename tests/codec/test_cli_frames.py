"""``model encode`` / ``model decode``: every frame survives, including empty payloads, and a frames
file that does not add up is refused (issue 11: 96 all-base rows came back as 80 with status 0)."""

from __future__ import annotations

import io
import json
import re
import sys
from importlib import resources

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.codec import DEMO_MODEL, demo_model
from gateway.codec.csvio import write_csv

from .conftest import DATA

CSV = DATA / "weather-400.csv"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / DEMO_MODEL
    path.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
    return path


def _round_trip(capsys, weights, src, tmp_path):
    frames, back = tmp_path / "f.frames", tmp_path / "back.csv"
    code, _, err = run(capsys, "model", "encode", "--model", weights, "--data", src, "--out", frames)
    assert code == 0, err
    code, _, err = run(capsys, "model", "decode", "--model", weights, "--frames", frames, "--out", back)
    assert code == 0, err
    return frames, back


@pytest.mark.parametrize("rows", [96, 100])
@pytest.mark.parametrize("kind", ["median", "constant"])
def test_all_median_and_all_constant_data_come_back_whole(capsys, weights, tmp_path, rows, kind):
    model = demo_model()
    row = model.params.base if kind == "median" else model.params.base + np.array([3, -2, 1, 4, 7])
    src = tmp_path / "flat.csv"
    write_csv(src, model.schema, np.tile(row, (rows, 1)), [f"t{i}" for i in range(rows)])
    frames, back = _round_trip(capsys, weights, src, tmp_path)
    lines = [json.loads(x) for x in frames.read_text().splitlines()]
    assert lines[0]["frames"] == len(lines) - 1 == -(-rows // 16) and lines[0]["samples"] == rows
    # Every frame has its line with the payload the model gives it (before the fix, an all-base frame
    # coded to nothing and its line vanished; since bitstream 2 it keeps the bytes its symbols emitted).
    starts = range(0, rows, 16)
    assert [x["payload"] for x in lines[1:]] == [
        model.encode(np.tile(row, (min(16, rows - s), 1))).hex() for s in starts
    ]
    assert [x["samples"] for x in lines[1:]] == [min(16, rows - s) for s in starts]
    assert back.read_bytes() == src.read_bytes()


def test_weather_round_trip_with_time_column(capsys, weights, tmp_path):
    src = tmp_path / "timed.csv"
    body = CSV.read_text().splitlines()
    src.write_text(
        "\n".join(
            ["time," + body[0]]
            + [f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00Z,{r}" for i, r in enumerate(body[1:])]
        )
        + "\n"
    )
    _, back = _round_trip(capsys, weights, src, tmp_path)
    assert back.read_text() == src.read_text()


@pytest.fixture
def encoded(capsys, weights, tmp_path):
    model = demo_model()
    src = tmp_path / "flat.csv"
    write_csv(src, model.schema, np.tile(model.params.base, (96, 1)))
    frames = tmp_path / "f.frames"
    assert run(capsys, "model", "encode", "--model", weights, "--data", src, "--out", frames)[0] == 0
    return frames


def _old_hex_lines(lines):
    """The format before the fix: bare hex, where six all-base frames were six empty lines."""
    lines[:] = [""] * 6


def _edit(path, change):
    lines = path.read_text().splitlines()
    change(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda ls: ls.pop(), "holds 5 frames, its header says 6 (truncated or edited)"),
        (lambda ls: ls.pop(1), "line 2: holds frame 1, expected frame 0"),
        (lambda ls: ls.insert(3, ""), "line 4: empty line"),
        (
            lambda ls: ls.__setitem__(6, ls[6].replace('"samples": 16', '"samples": 15')),
            "frames hold 95 samples",
        ),
        (
            lambda ls: (
                ls.__setitem__(6, ls[6].replace('"samples": 16', '"samples": 15')),
                ls.__setitem__(0, ls[0].replace('"samples": 96', '"samples": 95')),
            ),
            "frame 5 decodes to 16 samples, the file says 15",
        ),
        (
            lambda ls: ls.__setitem__(2, re.sub('"payload": "[0-9a-f]*"', '"payload": "zz"', ls[2])),
            "hex string",
        ),
        (
            lambda ls: ls.__setitem__(0, ls[0].replace('"sha256": "', '"sha256": "00')),
            "was encoded with model 0@1",
        ),
        (_old_hex_lines, "not a frames file"),
    ],
)
def test_frames_file_that_does_not_add_up_is_refused(capsys, weights, encoded, tmp_path, change, fragment):
    _edit(encoded, change)
    back = tmp_path / "back.csv"
    code, _, err = run(capsys, "model", "decode", "--model", weights, "--frames", encoded, "--out", back)
    assert code == 2 and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and not back.exists()


def test_stdin_and_stdout_with_an_installed_model(capsys, weights, tmp_path, monkeypatch):
    state = tmp_path / "state"
    code, out, _ = run(capsys, "--state-dir", state, "model", "install", weights)
    assert code == 0 and "installed model 0@1" in out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CSV.read_bytes())))
    code, frames_text, err = run(
        capsys, "--state-dir", state, "model", "encode", "--model", "0", "--data", "-", "--out", "-"
    )
    assert code == 0, err
    assert json.loads(frames_text.splitlines()[0])["model"] == "0@1"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(frames_text.encode())))
    code, csv_text, err = run(
        capsys, "--state-dir", state, "model", "decode", "--model", "0@1", "--frames", "-", "--out", "-"
    )
    assert code == 0, err
    assert csv_text == CSV.read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CSV.read_bytes())))
    code, out, _ = run(
        capsys, "--state-dir", state, "model", "eval", "--model", "0@1", "--data", "-", "--json"
    )
    assert code == 0 and json.loads(out)["lossless"] is True
    code, _, err = run(capsys, "--state-dir", state, "model", "eval", "--model", "0@2", "--data", CSV)
    assert code == 2 and "0@2 is not installed" in err
    code, _, err = run(capsys, "--state-dir", state, "model", "eval", "--model", "5", "--data", CSV)
    assert code == 2 and "model 5 is not installed" in err
