"""Time on air against the datasheet formula's reference values (shared/reference/sx1276.md)."""

from __future__ import annotations

import argparse
import json

import pytest

from gateway.cli import airtime as cli_airtime
from gateway.errors import GatewayError
from gateway.radio import airtime

REFERENCE = [
    # sf, bw_hz, payload, expected ms (CR 4/5, preamble 8, explicit header, CRC on, LDRO auto)
    (7, 125_000, 10, 41.216),
    (9, 125_000, 13, 164.864),
    (11, 125_000, 10, 577.536),
    (12, 125_000, 51, 2465.792),
    (7, 500_000, 255, 99.904),
]


@pytest.mark.parametrize(("sf", "bw", "payload", "ms"), REFERENCE)
def test_reference_values(sf: int, bw: int, payload: int, ms: float) -> None:
    assert airtime.time_on_air_s(payload, sf, bw) * 1000 == pytest.approx(ms, abs=1e-6)


def test_ldro_is_automatic_above_16ms_symbols() -> None:
    assert airtime.ldro_required(11, 125_000) and airtime.ldro_required(12, 250_000)
    assert not airtime.ldro_required(10, 125_000) and not airtime.ldro_required(11, 250_000)
    # arduino-LoRa leaves LDRO off at SF11/125: forcing it off changes the payload symbol count
    assert airtime.time_on_air_s(10, 11, 125_000, ldro=False) < airtime.time_on_air_s(10, 11, 125_000)


def test_formula_terms() -> None:
    # SF7, 10 bytes: ceil((80 - 28 + 28 + 16) / 28) = 4 blocks of (4 + 1) symbols, plus 8
    assert airtime.payload_symbols(10, 7) == 28
    # implicit header and no CRC remove 20 and 16 bits: ceil(60 / 28) = 3 blocks
    assert airtime.payload_symbols(10, 7, implicit=True, crc=False) == 23
    assert airtime.payload_symbols(10, 7, cr="4/8") == 8 + 4 * 8
    assert airtime.payload_symbols(0, 12, implicit=True, crc=False) == 8  # max(…, 0)
    assert airtime.symbol_time_s(7, 7800) == pytest.approx(128 / (500e3 / 64))


def test_packets_per_hour() -> None:
    assert airtime.packets_per_hour(0.036) == 1000
    assert airtime.packets_per_hour(0.164864) == 218
    assert airtime.packets_per_hour(1.0, 0.1) == 360


@pytest.mark.parametrize(
    "kwargs",
    [{"sf": 5}, {"sf": 13}, {"bw_hz": 100_000}, {"payload_len": 256}, {"cr": "4/9"}, {"preamble": 2}],
)
def test_bad_input_is_refused(kwargs: dict) -> None:
    args = {"payload_len": 10, "sf": 7, "bw_hz": 125_000} | kwargs
    with pytest.raises(ValueError):
        airtime.time_on_air_s(**args)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_airtime.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["airtime", "--sf", "9", "--bw", "125", "--cr", "4/5", "--payload", "13", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["airtime_ms"] == pytest.approx(164.864)
    assert out["symbol_ms"] == pytest.approx(4.096)
    assert out["packets_per_hour_1pct"] == 218


def test_cli_options_change_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["airtime", "--sf", "11", "--bw", "125", "--payload", "10", "--json"]
    results = {}
    for extra in ([], ["--implicit"], ["--no-crc"], ["--ldro", "off"], ["--preamble", "16"]):
        args = _cli(base + extra)
        args.func(args)
        results[" ".join(extra)] = json.loads(capsys.readouterr().out)["airtime_ms"]
    assert results[""] == pytest.approx(577.536)
    assert results["--preamble 16"] == pytest.approx(577.536 + 8 * 16.384)
    for cheaper in ("--implicit", "--no-crc", "--ldro off"):
        assert results[cheaper] < results[""]


def test_cli_text_and_bad_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["airtime", "--sf", "7", "--bw", "7.8", "--payload", "10"])
    assert args.func(args) == 0
    assert "ms" in capsys.readouterr().out
    args = _cli(["airtime", "--sf", "7", "--bw", "100", "--payload", "10"])
    with pytest.raises(GatewayError) as err:
        args.func(args)
    assert "--bw 100" in err.value.message and err.value.reason == "bad_argument"


def test_cli_help_renders() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_airtime.register(sub)
    assert "1 % duty" in parser.format_help()  # a bare % would make argparse raise
    assert "--ldro" in sub.choices["airtime"].format_help()
