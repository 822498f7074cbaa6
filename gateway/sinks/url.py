"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://…``, parsed the same everywhere.

Every URL that ends up in a message (an error, a log line, a summary) goes through :func:`redact_url`
first: a password in a URL is never printed, not even when the URL is malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from gateway.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
REDACTED = "<redacted>"
# A URL's user info inside text: from "scheme://" to the last "@" of the same word (greedy on purpose: a
# password with an unescaped "/", "?", "#" or "@" is the malformed URL most likely to be quoted in an error).
USERINFO_PATTERN = r"([a-z][a-z0-9+.-]*://)\S*@"
_USERINFO = re.compile(USERINFO_PATTERN, re.I)
_WHOLE_URL = re.compile(r"\s*([a-z][a-z0-9+.-]*://)(.*)@", re.I | re.S)
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


def redact_url(text: str) -> str:
    """``mqtt://user:pw@host`` → ``mqtt://<redacted>@host``: the user info of every URL in ``text``.

    Text that starts with a URL is taken as one URL, its user info running to its last ``@`` (a password
    may hold any character there, spaces included); a URL inside other text ends at the next space."""
    whole = _WHOLE_URL.match(text)
    if whole is not None:
        return f"{whole.group(1)}{REDACTED}@{text[whole.end() :]}"
    return _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed broker address; ``tls`` is true for ``mqtts``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a repr (a log line, a traceback) never shows it

    def redacted(self) -> str:
        """The URL without the password, for logs."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str, key: str = "mqtt.url") -> BrokerUrl:
    """Parse a broker URL; percent-escapes in the user and password are decoded.

    Raises ConfigError naming ``key`` on anything that is not a plain broker address; the message shows
    the URL only with its user info redacted.
    """
    text = url.strip()
    if "://" not in text:
        shown = f"{REDACTED}@{text.rpartition('@')[2]}" if "@" in text else text
        raise ConfigError(f"{key}: {shown!r} is not a broker URL (expected mqtt://host[:port] or mqtts://…)")
    if _UNSAFE.search(text):
        raise ConfigError(
            f"{key}: the URL contains a space or control character; percent-escape it (a space is %20)"
        )
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # an unbalanced [ or ] (an IPv6 address half written)
        raise ConfigError(f"{key}: {shown!r} is not a broker URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"{key}: scheme {parts.scheme!r} is not mqtt or mqtts")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"{key}: {shown!r} has a path or query; a broker URL is mqtt://[user[:password]@]host[:port]"
            " (percent-escape / ? # @ in a password)"
        )
    host = parts.hostname
    if not host:
        raise ConfigError(f"{key}: {shown!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key}: the port in {shown!r} is not a number in 1..65535") from None
    if port is None:
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside 1..65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerUrl(host=host, port=port, tls=scheme == "mqtts", username=username, password=password)
