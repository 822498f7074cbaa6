"""Removing secrets from what leaves the gateway: by key name (structured data) and by value (everything).

By name: a value under a key that names a secret (``password``, ``username``, ``key``, ``token``, …),
anything in a ``node_keys`` table, and the user info of URLs (in every file, log lines included). By
value: every known password and key — the MQTT password, node keys from the secrets file and from the
node registry — in each form it could be written in (as is, percent-escaped, hex in either case,
base64), replaced in the final bytes of every file. The second pass catches what the first cannot know
about (a log line, an error message). User names are hidden by name and in URLs but not by value: a
user name like "gateway" is also an ordinary word, and scrubbing it everywhere would wreck the bundle.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from gateway.sinks.url import REDACTED, USERINFO_PATTERN, redact_url

__all__ = ["REDACTED", "Scrubber", "redact_tree", "redact_url", "secret_values", "url_credentials"]
_SECRET_NAME = re.compile(r"(^|_)(password|passwd|pass|username|user|secret|token|key|key_hex)$", re.I)
_SECRET_TABLES = ("node_keys",)
_IDENTITY_NAME = re.compile(r"(^|_)(username|user)$", re.I)
_URL = re.compile(USERINFO_PATTERN, re.I)  # the same rule as every message (gateway.sinks.url)
_URL_BYTES = re.compile(USERINFO_PATTERN.encode(), re.I)


def redact_tree(obj: Any, under_secret: bool = False) -> Any:
    """A copy of a TOML/JSON-like tree with secret values replaced by name (keys and structure kept)."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            secret = under_secret or str(k) in _SECRET_TABLES or bool(_SECRET_NAME.search(str(k)))
            out[str(k)] = redact_tree(v, secret)
        return out
    if isinstance(obj, list | tuple):
        return [redact_tree(v, under_secret) for v in obj]
    if under_secret and obj is not None and not isinstance(obj, bool):
        return REDACTED
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, bytes):
        return REDACTED
    return obj


def secret_values(obj: Any, under_secret: bool = False) -> list[str]:
    """The values of a tree that :func:`redact_tree` would hide, except user names, plus URL passwords."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if _IDENTITY_NAME.search(str(k)):
                continue
            secret = under_secret or str(k) in _SECRET_TABLES or bool(_SECRET_NAME.search(str(k)))
            found += secret_values(v, secret)
    elif isinstance(obj, list | tuple):
        for v in obj:
            found += secret_values(v, under_secret)
    elif isinstance(obj, str):
        if under_secret:
            found.append(obj)
        found += url_credentials(obj)
    elif isinstance(obj, bytes) and under_secret:
        found.append(obj.hex())
    return found


def url_credentials(text: str) -> list[str]:
    """The passwords in URLs' user info (everything after the first ":" of it, percent-escapes decoded)."""
    out: list[str] = []
    for m in _URL.finditer(text):
        userinfo = m.group(0)[len(m.group(1)) : -1]
        _user, colon, password = userinfo.partition(":")
        if colon and password:
            out.append(unquote(password))
    return out


def _forms(secret: str) -> set[bytes]:
    """The ways a secret may be spelled in a file: as is, percent-escaped, base64; a hex key also as its
    bytes' hex in upper case and their base64."""
    raw = secret.encode()
    forms = {raw, quote(secret, safe="").encode(), base64.b64encode(raw), base64.b64encode(raw).rstrip(b"=")}
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", secret):
        key = bytes.fromhex(secret)
        forms |= {secret.lower().encode(), secret.upper().encode(), key}
        for enc in (base64.b64encode(key), base64.urlsafe_b64encode(key)):
            forms |= {enc, enc.rstrip(b"=")}
    return {f for f in forms if f}


class Scrubber:
    """Hides URL user info and replaces every form of the given secrets in a byte string."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[bytes] = set()
        for s in secrets:
            if s:
                forms |= _forms(s)
        self.forms = sorted(forms, key=len, reverse=True)  # longest first: a key before its substrings

    def __call__(self, data: bytes) -> bytes:
        data = _URL_BYTES.sub(lambda m: m.group(1) + REDACTED.encode() + b"@", data)
        for f in self.forms:
            data = data.replace(f, REDACTED.encode())
        return data
