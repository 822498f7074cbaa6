import numpy as np
import pytest

from gateway.codec import Schema
from gateway.codec.csvio import load_csv, read_csv, write_csv
from gateway.codec.errors import DataError, SchemaError

TOML = """
[[channel]]
name = "temperature"
unit = "°C"
step = 0.1
min = -40
max = 60
device_class = "temperature"

[[channel]]
name = "count"
unit = ""
step = 1
"""


def test_schema_fields_and_quantisation():
    s = Schema.from_toml(TOML)
    assert s.names == ("temperature", "count")
    t = s.channels[0]
    assert (t.unit, t.step, t.min, t.max, t.device_class, t.decimals) == (
        "°C",
        0.1,
        -40.0,
        60.0,
        "temperature",
        1,
    )
    assert (t.qmin, t.qmax) == (-400, 600)
    q = s.quantise(np.array([[21.34, 7.0], [-4.06, 12.0]]))
    assert q.tolist() == [[213, 7], [-41, 12]]
    assert s.values(q).tolist() == [[21.3, 7.0], [-4.1, 12.0]]
    assert Schema.from_toml(s.to_toml()) == s


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "at least one"),
        ('[[channel]]\nname = "a"\nstep = 0\n', "step"),
        ('[[channel]]\nname = "a"\nstep = 1\n[[channel]]\nname = "a"\nstep = 1\n', "duplicate"),
        ('[[channel]]\nname = "a"\nstep = 1\ncolour = "red"\n', "unknown key"),
        ('[[channel]]\nname = "a"\nstep = 1\nmin = 5\nmax = 1\n', "min"),
        ("[[channel]\n", "not valid TOML"),
    ],
)
def test_bad_schemas_are_refused_with_a_clear_reason(text, fragment):
    with pytest.raises(SchemaError) as err:
        Schema.from_toml(text, "x.toml")
    assert fragment in err.value.message
    assert err.value.reason == "bad_schema"


def test_csv_round_trip_keeps_resolution_and_time(tmp_path):
    s = Schema.from_toml(TOML)
    src = tmp_path / "in.csv"
    src.write_text("time,count,temperature,extra\nt0,3,21.34,x\nt1,4,-0.05,y\n")
    data = load_csv(src, s, round_=True)
    assert data.q.tolist() == [[213, 3], [0, 4]] and data.rounded == 2
    assert data.times == ["t0", "t1"]
    out = tmp_path / "out.csv"
    write_csv(out, s, data.q, data.times)
    assert out.read_bytes() == b"time,temperature,count\nt0,21.3,3\nt1,0.0,4\n"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("temperature\n1.0\n", "lacks channel(s) count"),
        ("temperature,count\n1.0,\n", "row 2"),
        ("temperature,count\n1.0,2\nabc,3\n", "row 3"),
        ("temperature,count\n", "no data rows"),
        ("temperature,count\n1e300,1\n", "exceeds"),
        ("temperature,count\n1.0,2\n1.0,2,7\n", "row 3 has 3 cells, the header names 2 columns"),
        ("temperature,count,temperature\n1,2,3\n", "more than once"),
        ("temperature,count\n1.0,2\n21.34,3\n", "row 3, temperature: 21.34 is not a multiple of the step"),
        ("temperature,count\n60.1,2\n", "row 2, temperature: 60.1 is outside the schema's range -40..60"),
    ],
)
def test_bad_csv_names_the_row(tmp_path, body, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(DataError) as err:
        read_csv(p, Schema.from_toml(TOML))
    assert fragment in err.value.message


def test_schema_refuses_control_characters_in_names_and_units():
    bad_keys = (
        'name = "temp\\u001b[2J"',
        'name = "t"\nunit = "°C\\n"',
        'name = "t"\ndevice_class = "x\\u2028y"',
    )
    for bad in bad_keys:
        with pytest.raises(SchemaError, match="control characters"):
            Schema.from_toml(f"[[channel]]\n{bad}\nstep = 1\n")
