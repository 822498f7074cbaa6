"""Runs every benchmark and writes docs/benchmarks.md: our figures beside the anchors'.

    python bench/report.py [--quick] [--fuzz-runs N] [--chaos-json F] [--mutation-json F] [--out PATH]

Each section says how its figure was measured and on what machine. Long runs (the chaos run, mutation
testing, a million fuzzed inputs per decoder) are given as the JSON files their own commands wrote, so
that the report can be rebuilt without repeating them; everything else runs here, in this process's
children, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.radio import airtime  # noqa: E402

# SPI transactions per received packet in public SX127x drivers, counted in their sources (receive path
# from the RxDone interrupt to the payload in hand, explicit header, CRC on):
ANCHORS_SPI = {
    "RadioLib (SX127x::readData + getPacketLength + IRQ clear)": "~11",
    "Adafruit CircuitPython RFM9x (receive)": "~8",
    "LoRaRF (SX127x.read, one transaction per payload byte)": "6 + 1 per payload byte (22 for 16 bytes)",
}


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.machine()} {cpu or platform.processor()}, {os.cpu_count()} CPUs shared with other work, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _run_json(args: list[str], timeout_s: float = 900) -> tuple[dict | list | None, str]:
    cmd = [sys.executable, *args]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    took = f"{time.perf_counter() - t0:.0f} s"
    if res.returncode not in (0, 1):
        return (
            None,
            f"exit {res.returncode}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}",
        )
    try:
        return json.loads(res.stdout), took
    except ValueError:
        return None, f"no JSON ({res.stderr.strip()[-200:]})"


def _cmd(args: list[str]) -> str:
    return "`python " + " ".join(args) + "`"


# -- sections -----------------------------------------------------------------------------------------------


def spi(quick: bool) -> list[str]:
    args = ["bench/radio.py", "--json", "--duration", "3" if quick else "10", "--tx", "20"]
    r, took = _run_json(args)
    out = ["## SPI transactions per received packet", ""]
    if not isinstance(r, dict):
        return [*out, f"Not measured: {took}.", ""]
    base = r.get("baseline", {})
    out += [
        f"Measured with {_cmd(args)} ({took}): {r.get('packets_received', '?')} packets of "
        f"{r.get('payload', 16)} bytes through the emulated air; both drivers in the same run, each on "
        "its own emulated chip hearing the same traffic. The anchors are counted from the drivers' "
        "published sources.",
        "",
        "| driver | SPI transactions per packet |",
        "|---|---|",
        f"| **ours** (`gateway.radio.sx1276`) | **{r.get('spi_transactions_per_packet')}** |",
        f"| byte-per-transaction public-style driver (`bench.baselines.NaiveDriver`, same run) | "
        f"{base.get('spi_transactions_per_packet')} |",
    ]
    out += [f"| {k} | {v} |" for k, v in ANCHORS_SPI.items()]
    cpu = r.get("driver_us_per_packet")
    if cpu is not None:
        out += [
            "",
            f"Driver CPU per packet (replayed thread time): ours {cpu} µs, baseline "
            f"{base.get('driver_us_per_packet')} µs; modelled on a Pi's SPI: ours "
            f"{r.get('modelled_pi_us_per_packet')} µs, baseline {base.get('modelled_pi_us_per_packet')} µs.",
        ]
    return [*out, ""]


def codec() -> list[str]:
    out = ["## Bytes per sample", ""]
    try:
        import numpy as np  # noqa: F401

        from bench.codec import DATASETS, run_one
        from gateway.codec import Schema
        from gateway.codec.csvio import read_csv
    except ImportError as exc:
        return [*out, f"Not measured: {exc} (pip install '.[bench]').", ""]
    rows = []
    data = ROOT / "tests" / "codec" / "data"

    def weather400():
        schema = Schema.load(data / "weather.toml")
        return schema, read_csv(data / "weather-400.csv", schema)[0]

    sets = [("weather-400 (tests/codec/data)", weather400)]
    skipped = []
    for name, fn in DATASETS.items():
        sets.append((name, fn))
    for name, fn in sets:
        try:
            schema, q = fn()
            rows.append(run_one(name, schema, q, 16))
        except Exception as exc:  # a dataset of the bench extra that is not installed
            skipped.append(f"{name} ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
    out += [
        "Measured with `bench.codec.run_one` (the code behind `python bench/codec.py`): 16 samples per "
        "frame, trained on the first half of each series, every frame of the second half encoded on its own, "
        "lossless (checked by decoding).",
        "",
        "| data | channels | Cayenne LPP | zstd -19 + 2 KB dictionary | Sprintz-style | **ours** "
        "| lossless |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['dataset']} | {r['channels']} | {r['lpp_bytes_per_sample']} | "
            f"{r['zstd19_dict2k_bytes_per_sample']} | {r['sprintz_bytes_per_sample']} | "
            f"**{r['bytes_per_sample']}** | {r['lossless']} |"
        )
    if skipped:
        out += [
            "",
            "Not run here (the `bench` extra's data sets are not installed): " + "; ".join(skipped) + ".",
        ]
    codec.rows = rows  # type: ignore[attr-defined]
    return [*out, ""]


def pipeline(quick: bool) -> list[str]:
    args = ["bench/pipeline.py", "--json", "--frames", "3000" if quick else "10000", "--seconds", "5"]
    r, took = _run_json(args)
    out = ["## End to end: frames/s and latency", ""]
    if not isinstance(r, dict):
        return [*out, f"Not measured: {took}.", ""]
    out += [
        f"Measured with {_cmd(args)} ({took}): emulated RxDone → frame checks → durable SQLite outbox → "
        "private Mosquitto → PUBACK, gateway and broker pinned to one core. The baselines publish the same "
        "messages at QoS 1 straight from RAM (no checks, no outbox) against the same broker in the same run.",
        "",
        "| | frames/s | frames per CPU-s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        f"| **ours** (durable outbox) | **{r.get('frames_per_s')}** | {r.get('frames_per_cpu_s')} | "
        f"{r.get('latency_ms_p50')} | {r.get('latency_ms_p99')} |",
        f"| bare paho, one thread | {r.get('baseline_bare_paho_frames_per_s')} | "
        f"{r.get('baseline_bare_paho_frames_per_cpu_s')} | | |",
        f"| paho `loop_start` bridge | {r.get('baseline_paho_loop_start_frames_per_s')} | "
        f"{r.get('baseline_paho_loop_start_frames_per_cpu_s')} | | |",
        "",
        f"Latency at {r.get('rate', 200)} frames/s offered; RSS {r.get('rss_mb')} MB; "
        f"{r.get('disk_bytes_per_frame')} bytes written per frame.",
    ]
    return [*out, ""]


def systemd() -> list[str]:
    out = ["## systemd exposure", ""]
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain-lora-gw.service"
        plain.write_text(
            "[Unit]\nDescription=plain\n[Service]\nExecStart=/usr/bin/lora-gw run\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        scores = {}
        for name, path in (
            ("a plain unit (ExecStart only)", plain),
            ("ours (systemd/lora-gw.service)", ROOT / "systemd" / "lora-gw.service"),
        ):
            try:
                res = subprocess.run(
                    ["systemd-analyze", "security", "--offline=true", str(path)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return [*out, f"Not measured: systemd-analyze unavailable ({exc}).", ""]
            line = [ln for ln in res.stdout.splitlines() if "Overall exposure level" in ln]
            scores[name] = line[-1].split(":", 1)[1].strip() if line else "?"
    ver = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True
    ).stdout.splitlines()[:1]
    out += [
        f"Measured with `systemd-analyze security --offline=true UNIT` ({ver[0] if ver else 'systemd'}); "
        "0 is fully confined, 10 fully exposed.",
        "",
        "| unit | exposure |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in scores.items()]
    return [*out, ""]


def _hour(seconds: float) -> str:
    return f"{seconds:.1f} s" + (" ✗" if seconds > 36 else "")


def limits() -> list[str]:
    out = ["## Physical limits of one SX1276", ""]
    out += [
        "Computed with `gateway.radio.airtime` (the datasheet's time-on-air formula, checked against its "
        "reference values in tests/radio): explicit header, CRC on, CR 4/5, preamble 8, LDRO where required. "
        "The maximum rate is back to back packets of a 16-byte payload on one channel, one demodulator, no "
        "gaps — an upper bound no collision-prone ALOHA network reaches.",
        "",
        "| SF | BW kHz | time on air, 16 B (ms) | max packets/s | packets/hour at 1 % duty cycle |",
        "|---|---|---|---|---|",
    ]
    for sf in range(7, 13):
        toa = airtime.time_on_air_s(16, sf, 125_000)
        out.append(f"| {sf} | 125 | {toa * 1000:.1f} | {1 / toa:.1f} | {airtime.packets_per_hour(toa)} |")
    rows = getattr(codec, "rows", [])
    if rows:
        r = next((x for x in rows if x["dataset"] == "greensboro"), rows[0])
        ch = r["channels"]
        lpp_payload = r["lpp_bytes_per_sample"]  # one reading of every channel per frame
        ours_payload = round(r["bytes_per_sample"] * 16)
        out += [
            "",
            f"Nodes one gateway channel can serve, for a node reporting all {ch} channels of "
            f"{r['dataset']} once a minute (60 samples/hour). LPP: one frame per sample ({lpp_payload}-byte "
            f"payload + 8 bytes frame overhead). Ours: one frame per 16 samples ({ours_payload}-byte "
            "payload, the measured mean, + 8). The channel is loaded to 1 % of its time (ALOHA "
            "collisions then stay near 1 − e^(−0.02) ≈ 2 %), so nodes = 36 s / (airtime per node per "
            "hour). A node whose own airtime passes 36 s an hour breaks its 1 % duty cycle by itself "
            "(marked ✗: it cannot report that often).",
            "",
            "| SF | LPP: airtime per node-hour | LPP: nodes | ours: airtime per node-hour | ours: nodes "
            "| ratio |",
            "|---|---|---|---|---|---|",
        ]
        for sf in (7, 8, 9, 10, 11, 12):
            lpp_h = 60 * airtime.time_on_air_s(lpp_payload + 8, sf, 125_000)
            ours_h = 60 / 16 * airtime.time_on_air_s(ours_payload + 8, sf, 125_000)
            out.append(
                f"| {sf} | {_hour(lpp_h)} | {int(36 / lpp_h)} | {_hour(ours_h)} | {int(36 / ours_h)} | "
                f"{lpp_h / ours_h:.1f}× |"
            )
    return [*out, ""]


def fuzzing(runs: int, seconds: float) -> list[str]:
    from bench import fuzz

    out = ["## Fuzzing", ""]
    rows = []
    for name in fuzz.TARGETS:
        args = ["bench/fuzz.py", "--target", name, "--runs", str(runs), "--seconds", str(seconds), "--json"]
        r, took = _run_json(args, timeout_s=3600)
        rows.append((name, r, took))
    engine = next((r.get("engine") for _, r, _ in rows if isinstance(r, dict) and r.get("engine")), "?")
    out += [
        f"Measured with `python bench/fuzz.py --target NAME --runs {runs} --seconds {seconds:g} --json` "
        f"per target (at most {seconds:g} s each: fewer inputs than --runs where a target is slower), engine "
        f"{engine} (coverage-guided libFuzzer; coverage = edges reached). Only each decoder's documented "
        "error (a `GatewayError`) is allowed out.",
        "",
        "| target | inputs | crashes | coverage | time |",
        "|---|---|---|---|---|",
    ]
    for name, r, took in rows:
        if not isinstance(r, dict):
            out.append(f"| {name} | – | – | – | {took} |")
        elif r.get("status", "").startswith("unavailable"):
            out.append(f"| {name} | {r['status']} | | | |")
        else:
            out.append(
                f"| {name} | {r['inputs']:,} | {r['crashes']} | {r['coverage']} "
                f"{r.get('coverage_unit') or ''} | {r.get('seconds')} s |"
            )
    return [*out, ""]


def mutation(path: str | None) -> list[str]:
    from bench.mutation import EQUIVALENT, reclassify

    out = ["## Mutation testing", ""]
    if path and Path(path).exists():
        data = json.loads(Path(path).read_text())
        out += [
            f"Measured with `python bench/mutation.py --json` ({data.get('seconds')} s, "
            f"{data.get('machine')}): "
            "each mutant changes one operator, constant, condition or assignment; each module against its "
            "own fast tests; equivalent mutants (below) are left out of the kill rate.",
            "",
            "| module | generated | killed | survived | equivalent | kill rate |",
            "|---|---|---|---|---|---|",
        ]
        data["modules"] = [reclassify(m) for m in data["modules"]]
        for m in data["modules"]:
            rate = "–" if m["kill_rate"] is None else f"{100 * m['kill_rate']:.1f} %"
            out.append(
                f"| {m['module']} | {m['generated']} | {m['killed']} | {m['survived']} | "
                f"{m['equivalent']} | {rate} |"
            )
        surv = [(m["module"], s) for m in data["modules"] for s in m["survivors"]]
        if surv:
            out += [
                "",
                "Surviving mutants, not yet triaged (a missing test, or an equivalent mutant to list below):",
                "",
            ]
            out += [f"- {mod}:{s['line']} `{s['mutation']}` in `{s['code']}`" for mod, s in surv]
    else:
        out.append(
            "Not in this report: run `python bench/mutation.py --json > mutation.json` and pass "
            "`--mutation-json mutation.json`."
        )
    out += ["", "Equivalent mutants (no input can tell them from the original):", ""]
    out += [f"- {mod}: `{what}` in `{code}` — {why}" for (mod, code, what), why in EQUIVALENT.items()]
    return [*out, ""]


def chaos(paths: list[str] | None) -> list[str]:
    """One table per run (e.g. the 10-minute and the 60-minute run of the issue's targets), shortest first."""
    out = ["## Chaos run", ""]
    runs = [json.loads(Path(p).read_text()) for p in (paths or []) if Path(p).exists()]
    if not runs:
        return [
            *out,
            "Not in this report: run `python bench/chaos.py --minutes 10 --json > chaos.json` and "
            "pass `--chaos-json chaos.json` (once per run).",
            "",
        ]
    runs.sort(key=lambda r: float(r["minutes"]))
    out += [
        "The real service (`lora-gw run`, emulated radio, two secured and one open simulated node) "
        "against a private persistent Mosquitto, a persistent MQTT v5 subscriber recording everything; "
        "faults at random from the seeded schedule. Each run's JSON is kept in `bench/results/`.",
        "",
    ]
    for r in runs:
        inv = ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in r["invariants"].items())
        commit = f", commit {r['commit']}" if r.get("commit") else ""
        out += [
            f"### {float(r['minutes']):g} minutes, seed {r['seed']}",
            "",
            f"Measured with `python bench/chaos.py --minutes {r['minutes']} --seed {r['seed']} --json` on "
            f"{r['machine']}{commit}.",
            "",
            "| | |",
            "|---|---|",
            f"| faults injected | {r['faults_total']}: "
            + ", ".join(f"{k} {v}" for k, v in r["faults_injected"].items())
            + " |",
            f"| packets received by the radio | {r['frames_sent']} (of which injected bad frames: "
            f"{r['frames_injected_bad']}) |",
            f"| frames accepted (committed to the outbox) | {r['frames_accepted']} |",
            f"| delivered to the subscriber | {r['frames_delivered']} |",
            f"| **lost** | **{r['frames_lost']}** (after a broker SIGKILL, the broker's: "
            f"{r['lost_after_broker_kill']}) |",
            f"| duplicates (same msg_id, identical content) | {r['duplicates']} |",
            f"| forged, replayed, corrupted or downgraded frames published | **{r['forged_published']}** |",
            f"| rejections by reason | {', '.join(f'{k} {v}' for k, v in r.get('rejected', {}).items())} |",
            "| operator commands beside the service | "
            + (", ".join(f"`{k}` ×{v}" for k, v in r.get("operator_commands", {}).items()) or "none")
            + " |",
            f"| gateway processes (started after each kill or stop) | {r.get('gateway_runs', '?')} |",
            f"| longest time from a fault's end to the next new delivery | {r['max_recovery_s']} s |",
            f"| longest watchdog silence (limit {r['watchdog_s']} s) | {r['max_watchdog_gap_s']} s |",
            f"| invariants | {inv} |",
            "",
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter radio and pipeline runs")
    ap.add_argument(
        "--fuzz-runs", type=int, default=1_000_000, help="inputs per fuzz target (default 1000000)"
    )
    ap.add_argument(
        "--fuzz-seconds", type=float, default=120.0, help="time cap per fuzz target (default 120)"
    )
    ap.add_argument(
        "--chaos-json", action="append", help="the output of bench/chaos.py --json (repeat for several runs)"
    )
    ap.add_argument("--mutation-json", help="the output of bench/mutation.py --json")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--only", help="re-render these sections (comma-separated) in the existing file")
    args = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        "# Benchmarks",
        "",
        f"Written by `python bench/report.py` on {started}, on {machine()}. Every figure below names the "
        "command that measured it; figures of other projects are counted from their sources and say so. "
        "The machine is a shared development host, not a Raspberry Pi: absolute speeds are this machine's, "
        "the ratios measured in one run are what carries over.",
        "",
    ]
    sections = {
        "chaos": lambda: chaos(args.chaos_json),
        "mutation": lambda: mutation(args.mutation_json),
        "fuzz": lambda: fuzzing(args.fuzz_runs, args.fuzz_seconds),
        "spi": lambda: spi(args.quick),
        "codec": codec,
        "pipeline": lambda: pipeline(args.quick),
        "systemd": systemd,
        "limits": limits,  # after codec: it uses the measured bytes per sample
    }
    if args.only:
        # re-render some sections in the existing file, keep the others as they are
        text = Path(args.out).read_text()
        chunks = text.split("\n## ")
        head, body = chunks[0], {c.split("\n", 1)[0]: "## " + c for c in chunks[1:]}
        wanted = [n.strip() for n in args.only.split(",")]
        if "limits" in wanted and "codec" not in wanted:
            wanted.insert(0, "codec")
        fresh = {}
        for name in wanted:
            lines = sections[name]()
            fresh[lines[0][3:]] = "\n".join(lines).rstrip() + "\n"
        merged = [head.rstrip() + "\n"] + [fresh.pop(t, c).rstrip() + "\n" for t, c in body.items()]
        merged += [v for v in fresh.values()]
        Path(args.out).write_text("\n".join(merged))
        print(f"updated {', '.join(wanted)} in {args.out}")
        return 0
    rendered = {name: sections[name]() for name in sections}  # codec before limits (dict order)
    for name in ("chaos", "mutation", "fuzz", "spi", "codec", "pipeline", "systemd", "limits"):
        parts += rendered[name]
    Path(args.out).write_text("\n".join(parts).rstrip() + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
