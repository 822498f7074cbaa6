"""CSV input and output as users expect: BOM, LF endings, the time column, range and grid checks."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.codec import Schema
from gateway.codec.csvio import load_csv, read_csv, write_csv
from gateway.codec.errors import DataError

TOML = """
[[channel]]
name = "temperature"
unit = "°C"
step = 0.1
min = -40
max = 60

[[channel]]
name = "count"
step = 1
min = 0
"""


@pytest.fixture
def schema() -> Schema:
    return Schema.from_toml(TOML)


def test_utf8_bom_is_accepted(tmp_path, schema):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbftemperature,count\r\n21.5,3\r\n")
    q, times = read_csv(p, schema)
    assert q.tolist() == [[215, 3]] and times is None


def test_output_has_lf_endings(tmp_path, schema):
    out = tmp_path / "o.csv"
    write_csv(out, schema, np.array([[215, 3], [-5, 0]]))
    assert out.read_bytes() == b"temperature,count\n21.5,3\n-0.5,0\n"


def test_time_column_comes_back_in_place(tmp_path, schema):
    p = tmp_path / "t.csv"
    p.write_text("count,time,temperature\n3,2026-01-01T00:00Z,21.5\n4,2026-01-01T00:10Z,21.6\n")
    data = load_csv(p, schema)
    assert data.times == ["2026-01-01T00:00Z", "2026-01-01T00:10Z"]
    out = tmp_path / "o.csv"
    write_csv(out, schema, data.q, data.times)
    assert out.read_text().splitlines()[1] == "2026-01-01T00:00Z,21.5,3"


@pytest.mark.parametrize(
    ("body", "clip", "round_", "expect", "clipped", "rounded"),
    [
        ("60.4,1\n-41,2\n1,-3\n", True, False, [[600, 1], [-400, 2], [10, 0]], 3, 0),
        ("21.34,1\n21.36,2\n", False, True, [[213, 1], [214, 2]], 0, 2),
        ("60.44,1\n", True, True, [[600, 1]], 1, 1),
    ],
)
def test_clip_and_round_count_what_they_change(
    tmp_path, schema, body, clip, round_, expect, clipped, rounded
):
    p = tmp_path / "v.csv"
    p.write_text("temperature,count\n" + body)
    data = load_csv(p, schema, clip=clip, round_=round_)
    assert data.q.tolist() == expect
    assert (data.clipped, data.rounded) == (clipped, rounded)
    with pytest.raises(DataError):  # without the option the same file is refused
        load_csv(p, schema)


def test_refusals_name_row_channel_and_count(tmp_path, schema):
    p = tmp_path / "v.csv"
    p.write_text("temperature,count\n1.0,1\n1.0,-1\n1.0,-2\n")
    with pytest.raises(DataError) as err:
        load_csv(p, schema)
    msg = err.value.message
    assert "row 3, count: -1.0 is outside the schema's range 0.." in msg and "2 such value(s)" in msg
    assert "--clip" in msg


def test_values_at_the_step_are_not_reported_as_off_grid(tmp_path):
    s = Schema.from_toml('[[channel]]\nname = "p"\nstep = 0.1\n[[channel]]\nname = "w"\nstep = 0.01\n')
    p = tmp_path / "g.csv"
    p.write_text("p,w\n1013.2,0.07\n987.3,12.29\n-0.3,0.57\n")
    data = load_csv(p, s)
    assert data.q.tolist() == [[10132, 7], [9873, 1229], [-3, 57]] and data.rounded == 0
