"""ACL refusals: one WARNING per reason per interval, not one per refused frame and retry."""

from __future__ import annotations

import logging

from gateway.sinks.mqtt import RefusalLog


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_flood_of_refusals_is_summarised_per_reason_per_interval(caplog):
    caplog.set_level(logging.DEBUG, logger="gateway.sinks.mqtt")
    now = [0.0]
    rl = RefusalLog(60.0, clock=lambda: now[0])
    for _retry in range(3):  # 200 refused frames, retried every 60 s, three times
        for fcnt in range(200):
            rl.refused(0x5101, fcnt, "Not authorized", 60.0)
        rl.refused(0x5102, 1, "Quota exceeded", 60.0)
        now[0] += 30.0
        rl.flush(60.0)
        now[0] += 30.0
    warnings = _warnings(caplog)
    assert len(warnings) <= 3 * 2 + 2, warnings  # not 603
    assert any("Quota exceeded" in w for w in warnings) and any("Not authorized" in w for w in warnings)
    counted = sum(int(w.split("refused ")[1].split(" ")[0]) for w in warnings if "Not authorized" in w)
    rl.flush(60.0)
    now[0] += 60.0
    rl.flush(60.0)
    rest = _warnings(caplog)[len(warnings) :]
    counted += sum(int(w.split("refused ")[1].split(" ")[0]) for w in rest if "Not authorized" in w)
    assert counted == 600  # every refusal is counted in some summary line
