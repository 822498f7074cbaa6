"""Suite-wide checks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class _FormatCheck(logging.Handler):
    """Formats every record, so a log call whose arguments do not fit its message fails the test
    that made it (a broken log line would otherwise surface only as noise on stderr, in the field)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as exc:  # any formatting failure is the finding
            self.errors.append(f"{record.name} {record.pathname}:{record.lineno}: {exc!r} in {record.msg!r}")


@pytest.fixture(autouse=True)
def log_messages_must_format() -> Iterator[None]:
    root = logging.getLogger()
    check = _FormatCheck()
    old_level = root.level
    root.addHandler(check)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(check)
        root.setLevel(old_level)
    assert not check.errors, "log calls that do not format:\n" + "\n".join(check.errors)
