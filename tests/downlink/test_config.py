"""``[downlink]``: defaults, ranges, one-line errors."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.service.config import parse_config
from gateway.service.downlink import settings


def test_defaults_and_values():
    d = settings(parse_config({}, env={}))
    assert (d.enabled, d.rx_delay_s, d.frequency_hz, d.max_late_s, d.max_queue) == (True, 1.0, None, 0.002, 8)
    cfg = parse_config(
        {"downlink": {"rx_delay_ms": 2000, "frequency_hz": 869_525_000, "max_queue": 3}}, env={}
    )
    d = settings(cfg)
    assert (d.rx_delay_s, d.frequency_hz, d.max_queue) == (2.0, 869_525_000, 3)


@pytest.mark.parametrize(
    ("table", "text"),
    [
        ({"rx_delay_ms": 50}, "downlink.rx_delay_ms"),
        ({"frequency_hz": 915_000_000}, "outside the EU868 band"),
        ({"max_queue": 0}, "downlink.max_queue"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_values_are_one_line_errors(table, text):
    with pytest.raises(ConfigError) as e:
        parse_config({"downlink": table}, env={})
    assert text in e.value.message and "\n" not in e.value.message
