"""Suite-wide checks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Property tests check results, not speed: on a busy machine (the suite runs on every core at once)
# one example can take longer than hypothesis' default 200 ms deadline, which fails a correct test.
settings.register_profile("lora-gw", deadline=None)
settings.load_profile("lora-gw")


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


# Under pytest-xdist (scripts/test: -n, --dist loadgroup) the tests of these modules run on one worker,
# because they share an expensive result that each worker would otherwise compute again: the held-out
# Greensboro split and its trained model (functools.cache in test_generate.py, about 20 s of training),
# and the firmware exports with their compiled harnesses (session fixtures in tests/firmware/conftest.py,
# about 20 s of gcc). By module path, in the scheduler, not with xdist_group marks: pytest-xdist 3.8
# carries those marks in the node ids, which pytest 9.2 no longer lets it change (pytest-xdist #1386).
SHARED_WORK = {
    "tests/codec/test_generate.py": "greensboro",
    "tests/codec/test_fill.py": "greensboro",
    "tests/codec/test_bridge.py": "greensboro",
    "tests/firmware/test_export_c.py": "firmware-exports",
    "tests/firmware/test_info_c.py": "firmware-exports",
    "tests/firmware/test_export_frame_flags.py": "firmware-exports",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadgroup, with the modules of ``SHARED_WORK`` as groups too."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedWorkScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = SHARED_WORK.get(nodeid.split("::", 1)[0])
            return f"shared:{group}" if group else super()._split_scope(nodeid)

    return SharedWorkScheduling(config, log)
