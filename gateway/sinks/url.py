"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://…``, parsed the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gateway.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed broker address; ``tls`` is true for ``mqtts``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        """The URL without the password, for logs."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str, key: str = "mqtt.url") -> BrokerUrl:
    """Parse a broker URL; percent-escapes in the user and password are decoded.

    Raises ConfigError naming ``key`` on anything that is not a plain broker address.
    """
    text = url.strip()
    if "://" not in text:
        raise ConfigError(f"{key}: {url!r} is not a broker URL (expected mqtt://host[:port] or mqtts://…)")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"{key}: scheme {parts.scheme!r} is not mqtt or mqtts")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"{key}: {url!r} has a path or query; a broker URL is mqtt://[user[:password]@]host[:port]"
        )
    host = parts.hostname
    if not host:
        raise ConfigError(f"{key}: {url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key}: the port in {url!r} is not a number in 1..65535") from None
    if port is None:
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside 1..65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerUrl(host=host, port=port, tls=scheme == "mqtts", username=username, password=password)
