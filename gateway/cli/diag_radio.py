"""``lora-gw diag chip|regs|scan|monitor|tx|link``: the radio half of the field diagnostics.

Each command loads the config as ``lora-gw run`` would (``--config``, ``--emulate``), prints aligned
tables (colour only on a terminal) or JSON with ``--json``, and exits 0 when everything checked is
fine, 1 when something failed, 2 for usage or configuration errors. Formatting only: the
measurements live in gateway.diag.radio*.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

from gateway.cli.diag_common import add_common
from gateway.diag import radio_link, radio_monitor, radio_regs, radio_scan, radio_tx
from gateway.diag.packet_log import DailyCsv
from gateway.diag.png import bar_chart, write_png
from gateway.diag.radio import DIO0_METHODS, radio_checks
from gateway.diag.radio_rig import RadioRig, open_rig
from gateway.diag.report import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Report
from gateway.diag.setup import load
from gateway.errors import ConfigError, HardwareError
from gateway.service.config import Config
from gateway.service.radio import lora_config

PEAK_ABOVE_FLOOR_DB = 10.0  # a channel this far above the median floor is flagged as occupied
BAR_WIDTH = 40


# ---------------------------------------------------------------------------------------- helpers
def _colour(text: str, code: str, on: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if on else text


def _tty() -> bool:
    return sys.stdout.isatty()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    """Columns padded to their widest cell; ``right`` holds the indexes of right-aligned columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _block() -> str:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return "█" if "utf" in enc else "#"


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))


def _check_seconds(seconds: float) -> None:
    if not 0 < seconds <= 7 * 86400:
        raise ConfigError(f"--seconds: {seconds:g} must be more than 0 and at most 604800 (a week)")


def _hardware_failure(exc: HardwareError, as_json: bool) -> int:
    if as_json:
        _print_json({"ok": False, "error": exc.message, "reason": exc.reason})
    else:
        print(f"lora-gw: {exc.message}", file=sys.stderr)
        print("         run 'lora-gw diag chip' for the wiring checks", file=sys.stderr)
    return EXIT_FAILED


# ---------------------------------------------------------------------------------------- chip
def _chip(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    report = Report(radio_checks(cfg, args.dio0_test))
    if args.json:
        print(report.to_json())
    else:
        print(report.render(sys.stdout))
    return report.exit_code


# ---------------------------------------------------------------------------------------- regs
def _regs(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    try:
        with open_rig(cfg, with_nodes=False, begin=True) as rig:
            result = radio_regs.read_dump(rig)
    except HardwareError as exc:
        return _hardware_failure(exc, args.json)
    if args.json:
        _print_json(result.as_dict())
        return EXIT_OK if not result.differences else EXIT_FAILED
    colour = _tty()
    rows = []
    for r in result.rows:
        mark = "*" if r.differs else ""
        fields = " ".join(
            f"{f.name.lower()}={f.value}" + (f"(want {f.expected})" if f.differs else "") for f in r.fields
        )
        row = [
            f"0x{r.address:02X}",
            r.name.lower(),
            f"0x{r.raw:02X}",
            "" if r.expected is None else f"0x{r.expected:02X}",
            mark,
            fields,
        ]
        rows.append(row)
    text = table(["addr", "register", "raw", "expected", "", "fields"], rows)
    lines = text.split("\n")
    for i, r in enumerate(result.rows):
        if r.differs:
            lines[i + 2] = _colour(lines[i + 2], "31", colour)
    print("\n".join(lines))
    if result.note:
        print(f"note: {result.note}")
    n = len(result.differences)
    if n:
        names = ", ".join(r.name.lower() for r in result.differences)
        print(f"{n} register(s) differ from the configured settings (marked *): {names}")
        print(
            "fix: restart the gateway (sudo systemctl restart lora-gw) so the driver rewrites them; if they"
        )
        print(
            "     change again, another program or a second device on the same chip select writes to the chip"
        )
    else:
        print("every configuration register matches the configured settings")
    return EXIT_OK if not n else EXIT_FAILED


# ---------------------------------------------------------------------------------------- scan
def _scan(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    freqs = radio_scan.plan(args.from_mhz, args.to_mhz, args.step_khz, args.dwell_ms)
    try:
        with open_rig(cfg, with_nodes=False, begin=True) as rig:
            result = radio_scan.scan(rig, freqs, args.dwell_ms)
    except HardwareError as exc:
        return _hardware_failure(exc, args.json)
    floor = result.floor_dbm
    busy = [c.rssi_dbm >= floor + PEAK_ABOVE_FLOOR_DB for c in result.channels]
    own = [c for c in result.channels if abs(c.freq_hz - cfg.radio.frequency_hz) <= cfg.radio.bw_hz / 2]
    own_busy = [c for c in own if c.rssi_dbm >= floor + PEAK_ABOVE_FLOOR_DB]
    if args.png:
        lo = min(-130.0, min(c.rssi_dbm for c in result.channels) - 5)
        hi = max(c.rssi_dbm for c in result.channels) + 5
        canvas = bar_chart(
            [c.rssi_dbm for c in result.channels],
            lo,
            hi,
            f"{freqs[0] / 1e6:.3f}",
            f"{freqs[-1] / 1e6:.3f}",
            highlight=busy,
        )
        write_png(args.png, canvas)
    if args.json:
        out = result.as_dict()
        out["ok"] = not own_busy
        out["occupied"] = [c.freq_hz / 1e6 for c, b in zip(result.channels, busy, strict=True) if b]
        if args.png:
            out["png"] = args.png
        _print_json(out)
        return EXIT_OK if not own_busy else EXIT_FAILED
    colour = _tty()
    lo = min(c.rssi_dbm for c in result.channels)
    hi = max(max(c.rssi_dbm for c in result.channels), floor + 30)
    scale_lo = min(lo, floor) - 5
    span = hi - scale_lo
    block = _block()
    rows = []
    for c, b in zip(result.channels, busy, strict=True):
        bar = block * max(1, round((c.rssi_dbm - scale_lo) / span * BAR_WIDTH))
        rows.append([f"{c.freq_hz / 1e6:.3f}", f"{c.rssi_dbm:.1f}", _colour(bar, "31", colour) if b else bar])
    print(table(["MHz", "dBm", f"RSSI ({scale_lo:.0f} dBm .. {hi:.0f} dBm)"], rows, right=frozenset({0, 1})))
    print(
        f"{len(result.channels)} channels, {result.step_hz / 1e3:g} kHz apart, {result.bw_hz / 1e3:g} kHz"
        f" bandwidth, {result.dwell_s * 1e3:g} ms each; noise floor (median) {floor:.1f} dBm;"
        f" chip time {result.chip_time_s:.2f} s"
    )
    peaks = [c for c, b in zip(result.channels, busy, strict=True) if b]
    if peaks:
        listed = ", ".join(f"{c.freq_hz / 1e6:.3f} MHz ({c.rssi_dbm:.0f} dBm)" for c in peaks)
        print(f"occupied (≥ {PEAK_ABOVE_FLOOR_DB:.0f} dB above the floor): {listed}")
    if own_busy:
        print(
            f"FAIL: the gateway's channel {cfg.radio.frequency_hz / 1e6:.3f} MHz is"
            f" {own_busy[0].rssi_dbm - floor:.0f} dB above the noise floor"
        )
        print("cause: a carrier or another transmitter sits on the channel and drowns weak packets")
        print("fix:   find the source (a switching power supply, another gateway) or move the network")
        print("       to a quiet channel from the list above ([radio] frequency_hz, and on every node)")
    if args.png:
        print(f"plot written to {args.png}")
    return EXIT_OK if not own_busy else EXIT_FAILED


# ---------------------------------------------------------------------------------------- monitor
MONITOR_HEADERS = ("time (UTC)", "node", "fcnt", "RSSI", "SNR", "freq err", "CRC", "verdict")
MONITOR_WIDTHS = (12, 10, 7, 7, 6, 9, 6, 0)


def _monitor_line(cells: Sequence[str]) -> str:
    out = []
    for i, (c, w) in enumerate(zip(cells, MONITOR_WIDTHS, strict=True)):
        out.append(c.rjust(w) if 2 <= i <= 5 else c.ljust(w))
    return "  ".join(out).rstrip()


def _nodes_for(cfg: Config, rig: RadioRig, args: argparse.Namespace) -> list:
    if rig.emulated:
        return radio_monitor.sim_nodes(cfg)
    return radio_monitor.registry_nodes(cfg, getattr(args, "state_dir", None))


def _monitor(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    _check_seconds(args.seconds)
    log = DailyCsv(args.csv) if args.csv else None
    colour = _tty()
    try:
        with open_rig(cfg, with_nodes=True, begin=True) as rig:
            mon = radio_monitor.Monitor(_nodes_for(cfg, rig, args), cfg.radio.crc_policy)
            radio_monitor.schedule_sim_traffic(rig, cfg, args.seconds)
            if not args.json:
                print(_monitor_line(MONITOR_HEADERS))
                print(
                    _monitor_line(
                        ["-" * max(w, len(h)) for w, h in zip(MONITOR_WIDTHS, MONITOR_HEADERS, strict=True)]
                    )
                )

            def show(packet: object) -> None:
                row = mon.handle(packet)  # type: ignore[arg-type]
                if log is not None:
                    log.write(row)
                if args.json:
                    print(json.dumps(row.as_dict()), flush=True)
                    return
                verdict = row.verdict
                if colour:
                    verdict = _colour(verdict, "32" if verdict == radio_monitor.ACCEPTED else "31", True)
                cells = [
                    row.utc.strftime("%H:%M:%S.%f")[:12],
                    row.node,
                    "" if row.fcnt is None else str(row.fcnt),
                    f"{row.rssi_dbm:.0f}",
                    f"{row.snr_db:.1f}",
                    f"{row.freq_error_hz:+.0f}",
                    row.crc,
                    verdict,
                ]
                print(_monitor_line(cells), flush=True)

            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a live monitor with its summary
                radio_monitor.receive_for(rig, args.seconds, show)
    except HardwareError as exc:
        return _hardware_failure(exc, args.json)
    finally:
        if log is not None:
            log.close()
    summary = mon.summary(args.seconds)
    if log is not None:
        summary["csv_files"] = [str(p) for p in log.files]
    if args.json:
        print(json.dumps(summary))
    else:
        print()
        nodes = summary["nodes"]
        if nodes:
            rows = [
                [n["node"], str(n["received"]), str(n["lost"]), f"{100 * n['loss_ratio']:.1f} %"]
                for n in nodes
            ]
            print(table(["node", "received", "lost", "loss"], rows, right=frozenset({1, 2, 3})))
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary["verdicts"].items()))
        print(f"{mon.packets} packets in {args.seconds:g} s" + (f": {verdicts}" if verdicts else ""))
        if not mon.packets:
            print(
                "FAIL: no packet heard. cause: no node transmits on this channel/SF/sync word, or the antenna"
            )
            print(
                "      is not connected. fix: check the nodes' radio settings against [radio] and the antenna"
            )
    return EXIT_OK if mon.packets else EXIT_FAILED


# ---------------------------------------------------------------------------------------- tx
def _tx_ledger(cfg: Config, emulate: bool):
    """The gateway's persistent duty-cycle ledger (shared with ``lora-gw run``); emulated: this run's."""
    from gateway import paths, statedb
    from gateway.downlink.dutycycle import ledger_for

    if emulate or cfg.radio.backend == "emulator":
        return ledger_for(cfg.radio, None)
    db = statedb.connect(paths.db_path(cfg.gateway.state_dir))
    return ledger_for(cfg.radio, db)


def _tx(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    payload = radio_tx.parse_payload(args.payload)
    airtime = lora_config(cfg.radio).time_on_air_s(len(payload))
    plan = radio_tx.make_plan(cfg.radio, airtime, args.count, args.interval, payload)
    if plan.refusal is not None:
        if args.json:
            _print_json({"ok": False, **plan.as_dict()})
        else:
            print(f"lora-gw: refused: {plan.refusal}", file=sys.stderr)
            allowed = plan.frames_per_hour_allowed
            print(
                f"  airtime per frame {plan.airtime_s * 1e3:.1f} ms ({len(payload)} bytes); allowed"
                f" {'any number of' if allowed is None else allowed} frames/hour; asked {plan.count} frames"
                f" every {plan.interval_s:g} s ({plan.frames_in_hour} in one hour)",
                file=sys.stderr,
            )
        return EXIT_USAGE
    ledger = _tx_ledger(cfg, args.emulate)
    try:
        with open_rig(cfg, with_nodes=False, begin=True) as rig:
            result = radio_tx.transmit(rig, plan, ledger)
    except HardwareError as exc:
        return _hardware_failure(exc, args.json)
    if args.json:
        _print_json(result.as_dict())
    else:
        rows = [[str(f["n"]), f"{f['t_s']:.3f}", f"{f['airtime_ms']:.1f}", "TxDone"] for f in result.sent]
        print(table(["#", "t (s)", "airtime (ms)", "result"], rows, right=frozenset({0, 1, 2})))
        print(
            f"{len(result.sent)} of {plan.count} frames sent at {cfg.radio.frequency_hz / 1e6:.3f} MHz"
            f" SF{cfg.radio.sf} {cfg.radio.tx_power_dbm} dBm; {plan.rules.duty_cycle_percent:g} % duty cycle"
            f" allows {plan.frames_per_hour_allowed or 'unlimited'} frames/hour"
        )
        if result.error:
            print(f"FAIL: {result.error}")
    return EXIT_OK if result.ok else EXIT_FAILED


# ---------------------------------------------------------------------------------------- link
def _link(args: argparse.Namespace) -> int:
    cfg = load(args.config, args.emulate)
    _check_seconds(args.seconds)
    try:
        with open_rig(cfg, with_nodes=True, begin=True) as rig:
            mon = radio_monitor.Monitor(_nodes_for(cfg, rig, args), cfg.radio.crc_policy)
            radio_monitor.schedule_sim_traffic(rig, cfg, args.seconds)
            with contextlib.suppress(KeyboardInterrupt):
                radio_monitor.receive_for(rig, args.seconds, mon.handle)
    except HardwareError as exc:
        return _hardware_failure(exc, args.json)
    advice = [
        radio_link.advise(t, cfg.radio.preamble, cfg.radio.tx_power_dbm)
        for t in sorted(mon.tallies.values(), key=lambda t: t.node_id)
        if t.snr_db
    ]
    ok = bool(advice) and all(a.healthy for a in advice)
    assumptions = radio_link.assumptions(cfg.radio.tx_power_dbm)
    if args.json:
        _print_json(
            {
                "ok": ok,
                "seconds": args.seconds,
                "nodes": [a.as_dict() for a in advice],
                "assumptions": assumptions,
            }
        )
        return EXIT_OK if ok else EXIT_FAILED
    colour = _tty()
    rows = []
    for a in advice:
        margin = f"{a.snr_margin_db:+.1f}"
        if not a.healthy:
            margin = _colour(margin, "31", colour)
        advised = "none" if a.advised_sf is None else f"SF{a.advised_sf}"
        saved = "" if a.saved_ms is None else f"{a.saved_ms:+.1f}"
        energy = "" if a.saved_mj is None else f"{a.saved_mj:+.2f}"
        rows.append(
            [
                a.node,
                str(a.packets),
                f"SF{a.sf}",
                f"{a.snr_db:.1f}",
                margin,
                f"{a.rssi_dbm:.0f}",
                f"{a.rssi_margin_db:+.0f}",
                advised,
                f"{a.airtime_ms:.1f}",
                saved,
                energy,
            ]
        )
    headers = [
        "node",
        "pkts",
        "SF",
        "SNR",
        "margin",
        "RSSI",
        "margin",
        "advice",
        "ToA ms",
        "saved ms",
        "saved mJ",
    ]
    print(table(headers, rows, right=frozenset(range(1, 11)) - {2, 7}))
    print(
        f"margins: SNR over the SF's demodulation limit, RSSI over the datasheet sensitivity; advice: the"
        f" fastest SF keeping ≥ {radio_link.MARGIN_TARGET_DB:.0f} dB SNR margin; energy at"
        f" {assumptions['tx_current_ma']:.0f} mA ({assumptions['tx_current_source']}) and"
        f" {assumptions['supply_v']} V, per frame"
    )
    if not advice:
        print("FAIL: no node heard: check the nodes' settings against [radio] and the antenna")
    for a in advice:
        if not a.healthy:
            print(
                f"FAIL: {a.node}: SNR margin {a.snr_margin_db:+.1f} dB at SF{a.sf} is below"
                f" {radio_link.MARGIN_TARGET_DB:.0f} dB: packets will be lost when conditions get worse"
            )
            fix = f"set the node to SF{a.advised_sf}" if a.advised_sf else "no SF is enough"
            print(f"      fix: {fix}; or raise the antenna / move the gateway closer")
    return EXIT_OK if ok else EXIT_FAILED


# ---------------------------------------------------------------------------------------- parser
def register(dsub: argparse._SubParsersAction) -> None:
    """Adds chip, regs, scan, monitor, tx and link to ``lora-gw diag``."""
    p = dsub.add_parser(
        "chip",
        help="the SX1276 answers, SPI link test, reset pin, DIO0 interrupt",
        description="Register-level checks of the radio and its wiring (stop the service first for a clean"
        " reading: sudo systemctl stop lora-gw).",
    )
    add_common(p)
    p.add_argument(
        "--dio0-test",
        choices=DIO0_METHODS,
        default="cad",
        help="raise DIO0 with a channel activity detection (default, never transmits) or a 1-byte 2 dBm"
        " transmission (skipped when [radio] tx_power_dbm is not allowed in the region)",
    )
    p.set_defaults(func=_chip)

    p = dsub.add_parser(
        "regs",
        help="decoded register dump, differences from the configured settings marked",
        description="Reads every LoRa register; the expected values are what the driver writes for this"
        " config. On real hardware the chip is read as it stands (as the running service left it).",
    )
    add_common(p)
    p.set_defaults(func=_regs)

    p = dsub.add_parser(
        "scan",
        help="noise floor per channel (spectral scan), table, bar chart, optional PNG",
        description="Instantaneous RSSI per channel in receive mode, averaged over the dwell time.",
    )
    add_common(p)
    p.add_argument(
        "--from",
        dest="from_mhz",
        type=float,
        required=True,
        metavar="MHZ",
        help="first channel (MHz, required)",
    )
    p.add_argument(
        "--to", dest="to_mhz", type=float, required=True, metavar="MHZ", help="last channel (MHz, required)"
    )
    p.add_argument(
        "--step", dest="step_khz", type=float, default=100.0, metavar="KHZ", help="step (kHz, default 100)"
    )
    p.add_argument(
        "--dwell",
        dest="dwell_ms",
        type=float,
        default=radio_scan.DEFAULT_DWELL_MS,
        metavar="MS",
        help=f"time per channel (default {radio_scan.DEFAULT_DWELL_MS:g} ms)",
    )
    p.add_argument("--png", metavar="FILE", help="also write a bar chart as PNG (default: none)")
    p.set_defaults(func=_scan)

    p = dsub.add_parser(
        "monitor",
        help="live table of received packets with the frame verdict, loss per node",
        description="Every packet: time, node, counter, RSSI, SNR, frequency error, CRC, verdict. With --json"
        " one JSON object per packet (NDJSON), then a summary object.",
    )
    add_common(p)
    p.add_argument("--seconds", type=float, default=60.0, metavar="S", help="how long to listen (default 60)")
    p.add_argument(
        "--csv", metavar="FILE", help="also log to FILE-<UTC date>.csv, a new file every day (default: none)"
    )
    p.set_defaults(func=_monitor)

    p = dsub.add_parser(
        "tx",
        help="test transmitter within the region's duty cycle",
        description="Sends N frames S seconds apart on the configured channel; refuses, with the numbers, a"
        " request beyond the duty cycle or the power limit.",
    )
    add_common(p)
    p.add_argument("--count", type=int, default=1, metavar="N", help="frames to send (default 1)")
    p.add_argument(
        "--interval", type=float, default=10.0, metavar="S", help="seconds between frames (default 10)"
    )
    p.add_argument("--payload", metavar="HEX", help="payload bytes as hex (default: 'lora-gw tx test')")
    p.set_defaults(func=_tx)

    p = dsub.add_parser(
        "link",
        help="per node: SNR and RSSI margins and the fastest SF that keeps 6 dB",
        description="Listens for S seconds, then gives per heard node the SNR margin over its SF's limit, the"
        " RSSI margin over the sensitivity, and the fastest SF with at least 6 dB margin.",
    )
    add_common(p)
    p.add_argument(
        "--seconds", type=float, default=120.0, metavar="S", help="how long to listen (default 120)"
    )
    p.set_defaults(func=_link)
