"""``lora-gw config check PATH``: validate a configuration file and show what it resolves to.

Besides the values, it checks that the paths the service writes (``gateway.state_dir``,
``state.backup_dir``, ``logging.file``) are usable by the user the service runs as: ``--user``, else
the installed unit's ``User=`` when run as root, else the user running the check."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from gateway.cli.examples import ExamplesFormatter

REDACTED = "<redacted>"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="check the gateway configuration",
        description="Configuration tools.",
        epilog="example:\n  lora-gw config check /etc/lora-gw/gateway.toml",
        formatter_class=ExamplesFormatter,
    )
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser(
        "check",
        help="validate a config file (and its secrets file and environment overrides)",
        description="Exit 0 and print a summary when PATH is valid; else one line naming the key, exit 2."
        " The paths the service writes are checked for the user it runs as.",
        epilog="examples:\n"
        "  lora-gw config check /etc/lora-gw/gateway.toml\n"
        "  sudo lora-gw config check /etc/lora-gw/gateway.toml --user lora-gw --json",
        formatter_class=ExamplesFormatter,
    )
    c.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the TOML file, e.g. /etc/lora-gw/gateway.toml (default: the --config option's)",
    )
    c.add_argument(
        "--json",
        action="store_true",
        help="print the summary and every resolved setting as JSON (secrets redacted; default: text)",
    )
    c.add_argument(
        "--user",
        metavar="NAME",
        help="check the paths for this user (default: the installed service's User= when run as root,"
        " else the current user)",
    )
    c.set_defaults(func=check)


def _service_user(explicit: str | None) -> Any:
    from gateway.errors import ConfigError
    from gateway.service.config import User

    if explicit:
        return User.named(explicit)
    if os.geteuid() == 0:
        from gateway.cli.service_info import installed

        svc = installed()
        if svc is not None and svc.user:
            try:
                return User.named(svc.user)
            except ConfigError:  # the unit names a user that does not exist here: check as this user
                pass
    return User.current()


def resolved_settings(cfg: Any) -> dict[str, Any]:
    """Every setting after layering, as JSON values; credentials and node keys are never shown."""
    from gateway.sinks.mqtt import shown_url

    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "node_keys":
            out["node_keys"] = {"count": len(value), "node_ids": [f"0x{n:08x}" for n in sorted(value)]}
        elif f.name == "mqtt":
            m = dataclasses.asdict(value)
            m.pop("broker")
            m.pop("credential_origins")
            m["url"] = shown_url(value)
            m["username"] = REDACTED if value.username else None
            m["password"] = REDACTED if value.password else None
            m["credentials_source"] = value.credentials_source
            out["mqtt"] = m
        elif dataclasses.is_dataclass(value):
            out[f.name] = dataclasses.asdict(value)
        else:
            out[f.name] = value
    return out


def check(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError
    from gateway.service.config import load_config, path_problems
    from gateway.sinks.mqtt import security_warnings, shown_url, uses_tls

    if not args.path:
        args.path = getattr(args, "config", None)
    if not args.path:
        raise ConfigError(
            "config check: give the config file: lora-gw config check /etc/lora-gw/gateway.toml"
        )
    cfg = load_config(args.path)
    user = _service_user(getattr(args, "user", None))
    problems = path_problems(cfg, user)
    if problems:
        raise ConfigError(problems[0])
    r, m, o = cfg.radio, cfg.mqtt, cfg.outbox
    tls = "off"
    if uses_tls(m):
        tls = "on, host name NOT checked (tls_insecure)" if m.tls_insecure else "on, fully verified"
    s = cfg.state
    summary = {
        "gateway_id": cfg.gateway.id,
        "radio": f"{r.backend} {r.frequency_hz / 1e6:.3f} MHz SF{r.sf} BW{r.bw_hz / 1000:g} kHz CR{r.cr}"
        f" ({r.region})",
        "broker": shown_url(m) + f" (MQTT {m.protocol})",
        "tls": tls,
        "tls_insecure": m.tls_insecure,
        "credentials": "username+password" if m.password else ("username" if m.username else "none"),
        "credentials_source": m.credentials_source,
        "topic_prefix": f"{m.topic_prefix}/{cfg.gateway.id}",
        "state_dir": cfg.gateway.state_dir or "(default)",
        "paths_checked_for": user.name,
        "outbox": f"synchronous={o.synchronous}, commit {o.commit_frames} frames / {o.commit_interval_ms} ms",
        "backups": f"every {s.backup_interval_h:g} h to {s.backup_dir}, keep {s.backup_keep}"
        + (", encrypted" if s.backup_passphrase_file else "")
        if s.backup_dir
        else "off",
        "node_keys": len(cfg.node_keys),
        "warnings": security_warnings(m),
    }
    if args.json:
        print(json.dumps({**summary, "settings": resolved_settings(cfg)}, indent=2))
    else:
        print(f"{args.path}: OK")
        for key, value in summary.items():
            if key != "warnings":
                print(f"  {key}: {value}")
        for warning in summary["warnings"]:
            print(f"  warning: {warning}")
    return 0
