"""One state for every command: global options anywhere, --config's state_dir, the installed service's
database and user named when a command differs; the credential layering; help that teaches."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from gateway.cli import main as cli
from gateway.service.config import load_config, parse_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in [v for v in os.environ if v.startswith("LORA_GW_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LORA_GW_UNIT_FILE", str(tmp_path / "no-unit"))


def _config(tmp_path, state):
    p = tmp_path / "gateway.toml"
    p.write_text(f'[gateway]\nid = "gw"\nstate_dir = "{state}"\n')
    return p


def test_global_options_before_or_after_the_sub_command(tmp_path, capsys):
    state = tmp_path / "s"
    assert cli.main(["nodes", "add", "0x2a", "--name", "a", "--state-dir", str(state)]) == 0
    assert cli.main(["nodes", "list", "--json", "--state-dir", str(state)]) == 0
    after = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert cli.main(["--state-dir", str(state), "nodes", "list", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in after] == [n["name"] for n in before] == ["a"]


def test_config_gives_every_state_command_the_services_state_dir(tmp_path, capsys):
    state = tmp_path / "service-state"
    config = _config(tmp_path, state)
    assert cli.main(["nodes", "add", "7", "--name", "seven", "--config", str(config)]) == 0
    assert (state / "gateway.db").exists()
    capsys.readouterr()
    assert cli.main(["--config", str(config), "nodes", "list", "--json"]) == 0
    assert [n["node_id"] for n in json.loads(capsys.readouterr().out)] == [7]
    assert cli.main(["state", "init", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["database"] == str(state / "gateway.db")


def test_a_command_on_another_database_or_user_than_the_service_says_so(tmp_path, capsys, monkeypatch):
    state = tmp_path / "service-state"
    config = _config(tmp_path, state)
    unit = tmp_path / "lora-gw.service"
    unit.write_text(f"[Service]\nExecStart=/usr/bin/lora-gw run --config {config}\nUser=nobody\n")
    monkeypatch.setenv("LORA_GW_UNIT_FILE", str(unit))
    other = tmp_path / "elsewhere"
    assert cli.main(["nodes", "list", "--state-dir", str(other)]) == 0
    err = capsys.readouterr().err
    assert f"uses {other / 'gateway.db'}, but the installed service" in err and f"--config {config}" in err
    assert "the installed service runs as nobody" in err
    assert cli.main(["nodes", "list", "--config", str(config)]) == 0
    assert "installed service (" not in capsys.readouterr().err  # same database: no warning


def test_env_url_without_credentials_keeps_the_secrets_files(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[mqtt]\nusername = "gw"\npassword = "pw"\n')
    secrets.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nsecrets_file = "secrets.toml"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    cfg = load_config(config, env={"LORA_GW_MQTT_URL": "mqtt://10.0.0.5:1884"})
    assert (cfg.mqtt.broker.host, cfg.mqtt.broker.port) == ("10.0.0.5", 1884)
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("gw", "pw")
    assert cfg.mqtt.credentials_source == "secrets file"
    cfg = load_config(config, env={"LORA_GW_MQTT_URL": "mqtt://u2:p2@h", "LORA_GW_MQTT_PASSWORD": "p3"})
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("u2", "p3")
    assert cfg.mqtt.credentials_source == (
        "username from environment (LORA_GW_MQTT_URL), password from environment (LORA_GW_MQTT_PASSWORD)"
    )
    assert parse_config({}, env={}).mqtt.credentials_source == "none"


def test_config_check_json_prints_every_resolved_setting_redacted(tmp_path, capsys):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        '[mqtt]\nusername = "gw"\npassword = "hunter2"\n[node_keys]\n"0x2a" = "' + "ab" * 16 + '"\n'
    )
    secrets.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw"\nstate_dir = "{tmp_path / "s"}"\nsecrets_file = "secrets.toml"\n'
    )
    assert cli.main(["config", "check", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "ab" * 16 not in out
    doc = json.loads(out)
    settings = doc["settings"]
    assert set(settings) >= {"gateway", "radio", "mqtt", "outbox", "logging", "nodes", "state", "node_keys"}
    assert settings["radio"]["bw_hz"] == 125000 and settings["outbox"]["commit_frames"] == 256
    assert (
        settings["mqtt"]["password"] == "<redacted>"
        and settings["mqtt"]["credentials_source"] == "secrets file"
    )
    assert settings["node_keys"] == {"count": 1, "node_ids": ["0x0000002a"]}
    assert doc["credentials_source"] == "secrets file"


def test_lora_gw_without_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lora-gw") and "examples:" in out


OTHERS: set[str] = set()  # every command, model and decode included


def test_every_option_has_help_with_and_every_command_an_example():
    parser = cli.build_parser()
    missing, no_example = [], []
    for p in cli.all_parsers(parser):
        words = p.prog.split()
        if set(words) & OTHERS:
            continue
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{p.prog} {'/'.join(action.option_strings) or action.dest}")
        if not subs and len(words) > 1 and "example" not in (p.epilog or ""):
            no_example.append(p.prog)
    assert not missing, missing
    assert not no_example, no_example


NOT_OURS_DEFAULTS: set[str] = set()


def test_every_option_that_takes_a_value_says_its_default():
    parser = cli.build_parser()
    missing = []
    for p in cli.all_parsers(parser):
        if set(p.prog.split()) & NOT_OURS_DEFAULTS:
            continue
        for a in p._actions:
            if (
                not a.option_strings
                or a.nargs == 0
                or isinstance(a, argparse._HelpAction | argparse._VersionAction)
            ):
                continue  # flags say what they turn on; positionals are required
            if a.required:
                continue  # no default to state (argparse's usage line shows it without brackets)
            if "default" not in (a.help or "") and "required" not in (a.help or ""):
                missing.append(f"{p.prog} {a.option_strings[0]}")
    assert not missing, missing


def test_airtime_takes_hz_too(capsys):
    assert cli.main(["airtime", "--sf", "7", "--bw", "125", "--payload", "10", "--json"]) == 0
    khz = json.loads(capsys.readouterr().out)
    assert cli.main(["airtime", "--sf", "7", "--bw-hz", "125000", "--payload", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == khz
    assert cli.main(["airtime", "--sf", "7", "--bw", "125kHz", "--payload", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == khz
    assert cli.main(["airtime", "--sf", "7", "--bw", "125000Hz", "--payload", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == khz


def test_config_check_checks_the_paths_for_the_service_user(tmp_path, capsys):
    state = tmp_path / "private"
    state.mkdir(mode=0o700)
    config = _config(tmp_path, state)
    assert cli.main(["config", "check", str(config)]) == 0  # usable by this user
    capsys.readouterr()
    assert cli.main(["config", "check", str(config), "--user", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err == f"lora-gw: gateway.state_dir: {state} is not writable by user nobody\n"


def test_decode_with_config_uses_the_services_registry(tmp_path, capsys):
    from gateway.frames.encoder import FrameEncoder

    state = tmp_path / "service-state"
    config = _config(tmp_path, state)
    key = tmp_path / "k"
    key.write_text("000102030405060708090a0b0c0d0e0f\n")
    key.chmod(0o600)
    assert (
        cli.main(["nodes", "add", "0x2a", "--name", "a", "--key-file", str(key), "--config", str(config)])
        == 0
    )
    frame = FrameEncoder(0x2A, bytes(range(16))).encode_lpp([(1, "temperature", 21.5)]).hex()
    capsys.readouterr()
    assert cli.main(["decode", frame, "--json", "--state-dir", str(tmp_path / "other")]) == 2  # unknown there
    capsys.readouterr()
    assert cli.main(["decode", frame, "--json", "--config", str(config)]) == 0
    assert "21.5" in capsys.readouterr().out
