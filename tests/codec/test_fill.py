"""Gap filling: held-out error against linear interpolation, `model fill`, the service's path."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.codec import fill, save_weights
from gateway.codec.errors import DataError
from gateway.codec.generate import clock_of, parse_times
from gateway.pipeline.message import AcceptedFrame, RadioMeta, StoredFrame
from gateway.pipeline.render import Renderer

from .test_generate import real_model, split  # noqa: F401  (module fixtures: held-out Greensboro)


def _gaps(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Gaps of 6–16 rows, at least 48 known rows apart."""
    out, pos = [], 30
    while pos + 16 + 30 < n:
        length = int(rng.integers(6, 17))
        out.append((pos, length))
        pos += length + 48 + int(rng.integers(0, 48))
    return out


def test_fill_beats_linear_interpolation_on_held_out_gaps(real_model, split):  # noqa: F811
    q, times, _, te, block = split
    secs, t0 = parse_times(times)
    rng = np.random.default_rng(4)
    err_model = np.zeros(5)
    err_lin = np.zeros(5)
    for b in np.unique(block[te]):
        rows = te[block[te] == b]
        truth = q[rows].astype(float)
        x = truth.copy()
        gaps = _gaps(len(rows), rng)
        for pos, length in gaps:
            x[pos : pos + length] = np.nan
        filled, est = fill.fill_series(real_model, x, clock_of(t0, secs[rows]))
        assert np.array_equal(est, np.isnan(x))
        assert np.array_equal(filled[~est], truth[~est])  # known cells are kept as they are
        t = np.arange(len(rows))
        known = ~np.isnan(x[:, 0])
        lin = np.stack([np.interp(t, t[known], x[known, c]) for c in range(5)], axis=1)
        err_model += np.abs(filled - truth)[est.any(axis=1)].sum(axis=0)
        err_lin += np.abs(lin - truth)[est.any(axis=1)].sum(axis=0)
    sd = q[te].std(axis=0)
    ratio = (err_model / sd).mean() / (err_lin / sd).mean()
    assert ratio <= 0.8, ratio
    irr = real_model.schema.names.index("irradiance")
    assert err_model[irr] < 0.5 * err_lin[irr]  # the daily cycle: interpolation cuts across the night


def test_one_missing_channel_is_estimated_from_the_others(real_model, split):  # noqa: F811
    q, times, _, te, _ = split
    secs, t0 = parse_times(times)
    rows = te[:600]
    truth = q[rows].astype(float)
    x = truth.copy()
    hum = real_model.schema.names.index("humidity")
    x[100:112, hum] = np.nan
    filled, est = fill.fill_series(real_model, x, clock_of(t0, secs[rows]))
    assert est.sum() == 12 and est[100:112, hum].all()
    assert np.all((filled[100:112, hum] >= 0) & (filled[100:112, hum] <= 100))


def _write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_cli_fill_inserts_missing_rows_and_marks_estimated(real_model, split, tmp_path, capsys):  # noqa: F811
    q, times, _, te, _ = split
    model_path = tmp_path / "m.npz"
    save_weights(real_model, model_path)
    rows = te[:120]
    cells = [real_model.schema.format_row(q[i]) for i in rows]
    header = ["time", *real_model.schema.names]
    data = [[times[i], *c] for i, c in zip(rows, cells, strict=True)]
    data[5][1] = ""  # a blank temperature
    data[6][5] = "nan"  # an unreadable irradiance
    del data[40:50]  # ten hours lost
    src, out = tmp_path / "gappy.csv", tmp_path / "filled.csv"
    _write(src, header, data)
    assert main(["model", "fill", "--model", str(model_path), "--data", str(src), "--out", str(out)]) == 0
    assert "120 rows, 12 estimated (10 inserted)" in capsys.readouterr().err
    with open(out, newline="", encoding="utf-8") as fh:
        back = list(csv.reader(fh))
    assert back[0] == [*header, "estimated"]
    body = back[1:]
    assert [r[0] for r in body] == [times[i] for i in rows]  # inserted rows get their times
    flagged = [i for i, r in enumerate(body) if r[-1] == "1"]
    assert flagged == [5, 6, *range(40, 50)]
    for i, r in enumerate(body):
        if i not in flagged:
            assert r[1:-1] == cells[i]  # measured rows are written back unchanged
    assert body[5][1] != "" and body[6][5] != "nan"
    # estimates sit inside the schema's range; irradiance estimated at night is zero
    for i in range(40, 50):
        hour = datetime.fromisoformat(body[i][0]).hour
        assert 0 <= float(body[i][2]) <= 100
        if hour in (22, 23, 0, 1, 2, 3):
            assert float(body[i][5]) == 0


def test_cli_fill_refuses_bad_cells_in_one_line(real_model, tmp_path, capsys):  # noqa: F811
    model_path = tmp_path / "m.npz"
    save_weights(real_model, model_path)
    src = tmp_path / "bad.csv"
    _write(
        src,
        ["temperature", "humidity", "pressure", "wind_speed", "irradiance"],
        [["1.0", "50", "x", "1", "0"]],
    )
    code = main(
        ["model", "fill", "--model", str(model_path), "--data", str(src), "--out", str(tmp_path / "o.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "row 2 has a non-numeric value 'x'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="at least one known value"):
        fill.fill_series(real_model, np.full((4, 5), np.nan))


def test_old_weight_files_fill_by_interpolation(demo):
    x = np.array([[100, 50, 1000, 10, 0], [np.nan] * 5, [np.nan] * 5, [130, 80, 1003, 40, 30]], dtype=float)
    filled, est = fill.fill_series(demo, x)
    assert est[1:3].all() and filled[1].tolist() == [110, 60, 1001, 20, 10]


@dataclass
class _Node:
    node_id: int
    name: str
    payload_codec: str = "model"


def _frame(model, fcnt: int, samples: np.ndarray, utc_ms: int) -> StoredFrame:
    radio = RadioMeta(-90.0, 7.0, 868_100_000, 0.0, 7, 125_000, "4/5", "ok", utc_ms)
    frame = AcceptedFrame(
        node_id=7,
        fcnt=fcnt,
        next_fcnt=fcnt + 1,
        format="frame",
        codec="model",
        model_id=model.model_id,
        model_version=model.version % 8,
        payload=model.encode(samples),
        radio=radio,
    )
    return StoredFrame(fcnt, frame)


def test_service_gap_filling_uses_the_same_bridge(real_model, split):  # noqa: F811
    q, times, _, te, _ = split
    n = real_model.samples_per_frame
    rows = te[200 : 200 + 4 * n]
    frames = [q[rows[k * n : (k + 1) * n]] for k in range(4)]
    last = datetime.fromisoformat(times[rows[-1]])  # time of the last sample of frame 3
    utc_ms = int(last.timestamp() * 1000)
    r = Renderer(
        "gw",
        "lora",
        lambda nid: _Node(nid, "station"),
        models=lambda mid, ver: real_model,
        gap_filling=lambda nid: True,
    )
    assert r.render(_frame(real_model, 0, frames[0], utc_ms - 3 * n * 3_600_000)) is not None
    assert r.render(_frame(real_model, 3, frames[3], utc_ms)) is not None  # frames 1 and 2 lost
    extras = r.take_extras()
    assert [e.kind for e in extras] == ["estimate", "estimate"]
    published = [json.loads(e.payload) for e in extras]
    assert all(m["estimated"] is True for m in published) and [m["fcnt"] for m in published] == [1, 2]
    expected = fill.fill_gap(real_model, frames[0], 2 * n, frames[3], end_time=utc_ms / 1000)
    assert np.array_equal(real_model.fill_gap(frames[0], 2 * n, frames[3], end_time=utc_ms / 1000), expected)
    chans = real_model.schema.channels
    want = [
        [round(float(v), ch.decimals) for ch, v in zip(chans, row, strict=True)]
        for row in real_model.values(expected)
    ]
    got = [[s[ch.name] for ch in chans] for m in published for s in m["samples"]]
    assert got == want
    truth = np.concatenate(frames[1:3]).astype(float)
    lin = np.linspace(frames[0][-1], frames[3][0], 2 * n + 2)[1:-1]
    assert np.abs(expected - truth).mean() < np.abs(lin - truth).mean()


def test_cli_fill_refuses_an_irregular_time_column_in_one_line(real_model, split, tmp_path, capsys):  # noqa: F811
    q, times, _, te, _ = split
    model_path = tmp_path / "m.npz"
    save_weights(real_model, model_path)
    rows = [[times[i], *real_model.schema.format_row(q[i])] for i in te[:5]]
    rows[2][0] = rows[1][0]  # the same time twice
    src = tmp_path / "dup.csv"
    _write(src, ["time", *real_model.schema.names], rows)
    code = main(
        ["model", "fill", "--model", str(model_path), "--data", str(src), "--out", str(tmp_path / "o.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "time column must strictly ascend" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()  # nothing half-written


def test_cli_generate_refuses_a_bad_start_in_one_line(real_model, tmp_path, capsys):  # noqa: F811
    model_path = tmp_path / "m.npz"
    save_weights(real_model, model_path)
    out = tmp_path / "g.csv"
    argv = ["model", "generate", "--model", str(model_path), "--samples", "3", "--start", "tomorrow"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--start 'tomorrow' is not an ISO 8601 time" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_gap_within_a_day_of_the_series_start_still_uses_its_neighbours(real_model, split):  # noqa: F811
    # regression: rows within the longest lag (24) of the start had no AR equation, so such a gap
    # fell back to the hour profile and ignored the samples around it
    q, times, _, te, _ = split
    secs, t0 = parse_times(times)
    rows = te[:30]
    truth = q[rows].astype(float)
    x = truth.copy()
    x[4:10] = np.nan
    filled, _ = fill.fill_series(real_model, x, clock_of(t0, secs[rows]))
    t = np.arange(30)
    known = ~np.isnan(x[:, 0])
    lin = np.stack([np.interp(t, t[known], x[known, c]) for c in range(5)], axis=1)
    sd = q[te].std(axis=0)
    err = (np.abs(filled - truth)[4:10] / sd).mean()
    assert err <= 1.2 * (np.abs(lin - truth)[4:10] / sd).mean(), err
