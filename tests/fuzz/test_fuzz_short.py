"""The CI's short fuzz run (bench/fuzz.py): every available target takes a few hundred mutated inputs with
only its documented errors; the engine notices a planted crash; the command target is reported as
unavailable until the downlink parser exists; and the config loader bug the fuzzer found stays fixed."""

from __future__ import annotations

import importlib.util

import pytest

from bench import fuzz
from gateway.errors import ConfigError
from gateway.service.config import load_config


def _command_exists() -> bool:
    try:
        return importlib.util.find_spec(fuzz.COMMAND_MODULE) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("name", sorted(fuzz.TARGETS))
def test_each_target_survives_a_short_random_run(name: str) -> None:
    if name == "command" and not _command_exists():
        result = fuzz.run(name, 100)
        assert result["inputs"] == 0 and result["status"].startswith("unavailable")
        return
    result = fuzz.run_random(fuzz.TARGETS[name], 400, seed=3, measure=False)
    assert result["inputs"] == 400
    assert result["crashes"] == 0, result["examples"]


def test_the_engine_reports_a_planted_crash() -> None:
    def build():
        def one(data: bytes) -> None:
            if data[:2] == b"\x13\x37":
                raise IndexError("planted")
            if data[:1] == b"\x00":
                raise ConfigError("documented")  # allowed: a GatewayError

        return one, [b"\x00", b"\x13\x37", b"\x13"]

    result = fuzz.run_random(fuzz.Target("planted", "a bug on purpose", build), 300, seed=1, measure=False)
    assert result["crashes"] >= 1
    assert result["examples"][0].startswith("1337") and "IndexError: planted" in result["examples"][0]


def test_coverage_guided_run_of_one_target() -> None:
    """atheris where it is installed (libFuzzer edges), else the random engine's line coverage."""
    engine = "atheris" if fuzz.have_atheris() else "random"
    result = fuzz.run("radiohead", 2000, seed=1, engine=engine)
    assert result["engine"] == engine and result["crashes"] == 0
    assert result["inputs"] == 2000 and result["coverage"] > 0


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(b'[gateway]\nid = "gw\xe5"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "UTF-8" in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("url", ["mqtt://]27.0.0.1:1883", "mqtt://[::1:1883", "mqtts://user@[fe80::1"])
def test_a_broker_url_with_an_unbalanced_bracket_is_a_one_line_error(tmp_path, url: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\nid = "gw"\n[mqtt]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "mqtt.url" in err.value.message and "\n" not in err.value.message
