"""``lora-gw diag mqtt`` and ``lora-gw diag bundle`` (the system side of diag)."""

from __future__ import annotations

import argparse
import json

from gateway.cli.diag_common import add_common
from gateway.cli.doctor import print_report


def register(dsub: argparse._SubParsersAction) -> None:
    """Adds ``mqtt`` and ``bundle`` to the ``lora-gw diag`` parser."""
    p = dsub.add_parser(
        "mqtt",
        help="the broker checks: reachable, TLS, login, publish/subscribe round trip",
        description="Checks the broker the service would use (config, secrets file, LORA_GW_MQTT_*).",
    )
    add_common(p)
    p.set_defaults(func=cmd_mqtt)

    p = dsub.add_parser(
        "bundle",
        help="write a support archive (config with secrets removed, versions, logs, doctor's report)",
        description="Writes FILE.tar.gz for a support request. Passwords and node keys are removed"
        " everywhere in it, user names from the config and URLs. Exit as doctor's checks (0 all fine,"
        " 1 a check failed, 2 the config does not load); the archive is written in every case.",
    )
    add_common(p)
    p.add_argument("--out", required=True, metavar="FILE.tar.gz", help="the archive to write (required)")
    p.set_defaults(func=cmd_bundle)


def cmd_mqtt(args: argparse.Namespace) -> int:
    from gateway.diag import doctor

    result = doctor.run_mqtt(args.config, args.emulate)
    print_report(result.report, args.json)
    return result.exit_code


def cmd_bundle(args: argparse.Namespace) -> int:
    from gateway.diag import bundle

    result = bundle.build(args.out, args.config, args.emulate, getattr(args, "state_dir", None))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"wrote {result.path} ({len(result.members)} files, {result.size_bytes} bytes)")
        print(f"doctor: {result.doctor_summary}")
        for note in result.notes:
            print(f"note: {note}")
    return result.exit_code
