"""One check's result and a checklist of them, rendered as an aligned table or as JSON.

``ok`` is tri-state: True passed, False failed (``cause`` and ``fix`` say why and what to do, in words a
non-expert understands), None did not apply here (``detail`` says why; it never fails a run).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool | None
    detail: str = ""
    cause: str | None = None
    fix: str | None = None

    @classmethod
    def passed(cls, name: str, detail: str = "") -> Check:
        return cls(name, True, detail)

    @classmethod
    def failed(cls, name: str, detail: str, cause: str, fix: str) -> Check:
        return cls(name, False, detail, cause, fix)

    @classmethod
    def skipped(cls, name: str, why: str) -> Check:
        return cls(name, None, why)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def render(self, out: TextIO | None = None, colour: bool | None = None) -> str:
        """A checklist: one row per check, and under each failure its cause and fix."""
        if colour is None:
            colour = (out or sys.stdout).isatty()
        marks = {True: ("ok", "32"), False: ("FAIL", "31"), None: ("n/a", "33")}
        width = max((len(c.name) for c in self.checks), default=4)
        lines = []
        for c in self.checks:
            word, code = marks[c.ok]
            mark = f"\033[{code}m{word:<4}\033[0m" if colour else f"{word:<4}"
            lines.append(f"{mark}  {c.name:<{width}}  {c.detail}".rstrip())
            if c.ok is False:
                lines.append(f"{'':4}  {'':<{width}}  cause: {c.cause}")
                lines.append(f"{'':4}  {'':<{width}}  fix:   {c.fix}")
        failed = sum(1 for c in self.checks if c.ok is False)
        n = len(self.checks)
        lines.append(f"{n} checks, {failed} failed" if failed else f"{n} checks, all fine")
        return "\n".join(lines)
