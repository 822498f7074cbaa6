"""The ``[homeassistant]``, ``[http]`` and ``[mqtt] retain_telemetry`` options, and the listener's token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from gateway.errors import ConfigError
from gateway.service.config import parse_config
from gateway.web.server import WebServer, WebSources
from tests.service.conftest import free_port


def test_defaults_are_off() -> None:
    cfg = parse_config({}, env={})
    assert cfg.http.listen is None and not cfg.homeassistant.enabled and not cfg.mqtt.retain_telemetry
    assert cfg.homeassistant.discovery_prefix == "homeassistant"


def test_options_parse() -> None:
    cfg = parse_config(
        {
            "http": {"listen": "127.0.0.1:9108"},
            "homeassistant": {"enabled": True, "discovery_prefix": "ha"},
            "mqtt": {"retain_telemetry": True},
        },
        env={},
    )
    assert cfg.http.listen == ("127.0.0.1", 9108) and cfg.http.loopback
    assert cfg.homeassistant.enabled and cfg.homeassistant.discovery_prefix == "ha"
    assert cfg.mqtt.retain_telemetry


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"http": {"listen": "0.0.0.0:9108"}}, "http.listen: 0.0.0.0:9108 is reachable from other machines"),
        ({"http": {"listen": "9108"}}, "http.listen: '9108' is not host:port"),
        ({"http": {"listen": "127.0.0.1:0"}}, "is not host:port"),
        ({"homeassistant": {"discovery_prefix": "ha/#"}}, "homeassistant.discovery_prefix"),
        ({"homeassistant": {"enable": True}}, "homeassistant.enable: unknown option"),
    ],
)
def test_bad_options_are_one_line_errors(data, message) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_token_is_required_and_checked_when_set() -> None:
    sources = WebSources(lambda: {"ok": 1}, lambda: {"nodes": []}, lambda: {"packets": []}, lambda: {})
    server = WebServer(("127.0.0.1", free_port()), sources, token="s3cret")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/", "/api/status", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=5)
            assert err.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/api/status?token=wrong", timeout=5)
        with urllib.request.urlopen(base + "/api/status?token=s3cret", timeout=5) as r:
            assert json.loads(r.read()) == {"ok": 1}
        req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
        with urllib.request.urlopen(base + "/?token=s3cret", timeout=5) as r:
            page = r.read().decode()
        assert "<script>" in page and "<script src" not in page  # self-contained: no CDN, no build step
        assert "https://" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    finally:
        server.stop()


def test_a_port_in_use_is_a_one_line_error() -> None:
    sources = WebSources(dict, dict, dict, dict)
    first = WebServer(("127.0.0.1", free_port()), sources)
    first.start()
    try:
        with pytest.raises(ConfigError, match=r"http\.listen: cannot listen on 127\.0\.0\.1"):
            WebServer(("127.0.0.1", first.port), sources).start()
    finally:
        first.stop()
