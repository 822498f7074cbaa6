"""journald-friendly logging: under systemd (``$JOURNAL_STREAM`` names our stderr) each record is one line
``<N>logger: message`` — the ``<N>`` syslog priority that journald turns into the entry's PRIORITY=, and no
timestamp (the journal stamps every entry; a second one in the message is noise). A record with a traceback
stays one entry: its lines are joined with `` | ``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    for level, prio in PRIORITIES.items():  # highest first
        if levelno >= level:
            return prio
    return 7


def under_journald(env: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal (``JOURNAL_STREAM=dev:inode``)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{syslog_priority(record.levelno)}>" + " | ".join(
            line for line in text.splitlines() if line.strip()
        )


def use_journal_format(root: logging.Logger | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Switch the stderr handlers of ``root`` to :class:`JournalFormatter` when running under journald."""
    if not under_journald(env):
        return False
    root = root or logging.getLogger()
    for h in root.handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setFormatter(JournalFormatter())
    return True
