"""``lora-gw config check PATH``: validate a configuration file and show what it resolves to."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check the gateway configuration", description="Configuration tools.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser(
        "check",
        help="validate a config file (and its secrets file and environment overrides)",
        description="Exit 0 and print a summary when PATH is valid; else one line naming the key, exit 2.",
    )
    c.add_argument("path", help="the TOML file, e.g. /etc/lora-gw/gateway.toml")
    c.add_argument("--json", action="store_true", help="print the resolved settings as JSON (secrets hidden)")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from gateway.service.config import load_config
    from gateway.sinks.mqtt import security_warnings, shown_url, uses_tls

    cfg = load_config(args.path)
    r, m, o = cfg.radio, cfg.mqtt, cfg.outbox
    tls = "off"
    if uses_tls(m):
        tls = "on, host name NOT checked (tls_insecure)" if m.tls_insecure else "on, fully verified"
    summary = {
        "gateway_id": cfg.gateway.id,
        "radio": f"{r.backend} {r.frequency_hz / 1e6:.3f} MHz SF{r.sf} BW{r.bw_hz / 1000:g} kHz CR{r.cr}"
        f" ({r.region})",
        "broker": shown_url(m) + f" (MQTT {m.protocol})",
        "tls": tls,
        "tls_insecure": m.tls_insecure,
        "credentials": "username+password" if m.password else ("username" if m.username else "none"),
        "topic_prefix": f"{m.topic_prefix}/{cfg.gateway.id}",
        "outbox": f"synchronous={o.synchronous}, commit {o.commit_frames} frames / {o.commit_interval_ms} ms",
        "node_keys": len(cfg.node_keys),
        "warnings": security_warnings(m),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.path}: OK")
        for key, value in summary.items():
            if key != "warnings":
                print(f"  {key}: {value}")
        for warning in summary["warnings"]:
            print(f"  warning: {warning}")
    return 0
