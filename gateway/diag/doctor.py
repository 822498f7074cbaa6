"""``lora-gw doctor``: every check in one checklist, in the order a field installer works through them
(config, SPI, chip, broker, outbox, clock, models, service).

A configuration that does not load is itself the ``config`` check failing; the checks that need a
configuration are then left out, those that do not (clock, systemd) still run, and the exit code is 2
(a configuration error, as for every ``lora-gw`` command) rather than 1. A check that raises is reported
as failed with its error instead of stopping the others: in the field a partial checklist is worth more
than a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway import paths
from gateway.diag import broker, radio, setup, system
from gateway.diag.report import EXIT_USAGE, Check, Report
from gateway.errors import ConfigError
from gateway.service.config import Config

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DoctorResult:
    report: Report
    cfg: Config | None  # None: the configuration did not load
    exit_code: int


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        out = fn()
    except Exception as exc:  # one broken check must not hide the others
        log.debug("check %s raised", name, exc_info=True)
        return [
            Check.failed(
                name,
                f"{type(exc).__name__}: {exc}",
                f"the {name} check itself failed ({type(exc).__name__})",
                "report it with the support bundle: lora-gw diag bundle --out bundle.tar.gz",
            )
        ]
    return [_one_line(c) for c in (out if isinstance(out, list) else [out])]


def _one_line(c: Check) -> Check:
    """Cause and fix are one line each (an error message may carry newlines)."""
    if c.ok is not False:
        return c
    return dataclasses.replace(
        c, cause=" ".join((c.cause or "").split()), fix=" ".join((c.fix or "").split())
    )


def config_check(config: str | None, emulate: bool) -> tuple[Check, Config | None]:
    path = config or str(setup.default_config_path())
    try:
        cfg = setup.load(config, emulate)
    except ConfigError as exc:
        return (
            Check.failed(
                "config",
                path,
                exc.message,
                f"correct it in the file, then check it with: lora-gw config check {path}",
            ),
            None,
        )
    radio_note = "emulated radio" if cfg.radio.backend == "emulator" else f"radio {cfg.radio.spi_device}"
    return Check.passed("config", f"{path} ({radio_note}, gateway id {cfg.gateway.id})"), cfg


def run(
    config: str | None = None,
    emulate: bool = False,
    state_dir: str | None = None,
    host: system.Host | None = None,
) -> DoctorResult:
    host = host or system.default_host()
    report = Report()
    check, cfg = config_check(config, emulate)
    report.add(_one_line(check))
    if cfg is not None:
        steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
            ("spi_device", lambda: system.spi_device_check(cfg, host)),
            ("radio", lambda: radio.radio_checks(cfg)),
            ("broker", lambda: broker.broker_checks(cfg)),
            (
                "outbox",
                lambda: system.outbox_check(
                    cfg, system.read_outbox(system.state_dir(cfg, state_dir) / paths.DB_NAME)
                ),
            ),
            ("state_access", lambda: system.state_access_check(system.state_dir(cfg, state_dir))),
            ("clock_sync", lambda: system.clock_sync_check(host)),
            ("models", lambda: system.models_check(system.state_dir(cfg, state_dir))),
            ("systemd_unit", lambda: system.systemd_unit_check(host)),
        ]
    else:
        steps = [
            ("clock_sync", lambda: system.clock_sync_check(host)),
            ("systemd_unit", lambda: system.systemd_unit_check(host)),
        ]
    for name, fn in steps:
        for c in _guarded(name, fn):
            report.add(c)
    return DoctorResult(report, cfg, report.exit_code if cfg is not None else EXIT_USAGE)


def run_mqtt(config: str | None = None, emulate: bool = False) -> DoctorResult:
    """The broker checks alone (``lora-gw diag mqtt``); a config that does not load fails as in doctor."""
    check, cfg = config_check(config, emulate)
    report = Report()
    if cfg is None:
        report.add(_one_line(check))
        return DoctorResult(report, None, EXIT_USAGE)
    for c in _guarded("broker", lambda: broker.broker_checks(cfg)):
        report.add(c)
    return DoctorResult(report, cfg, report.exit_code)
