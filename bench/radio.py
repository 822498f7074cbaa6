"""Radio benchmark: packets through the emulated air, chips and the real SX1276 driver.

Nodes (each an SX1276 driver over its own emulated chip, at random distances) offer Poisson traffic
on one channel at ``--rate`` packets/s, more than one SX1276 can carry, so the air loses frames to
collisions. The benchmark checks that the driver loses none of the frames the chip received and
that every lost frame is explained by the air, and measures the driver's SPI cost and CPU time.

In the same run a second gateway chip, at the same distance from every node, hears the same traffic
through ``bench.baselines.NaiveDriver`` (register-by-register status reads, the FIFO one byte per
transaction, as public Python drivers do; it always uses its DIO0 callback). The top-level keys are
OUR driver's; ``baseline`` holds the same figures for the naive driver and ``ratios`` is baseline ÷
ours. Per-packet figures divide by the packets each driver read out of the FIFO (any CRC state).
The baseline keeps payload, SNR and RSSI only; ours also builds an RxPacket (FEI, counters, times).
Both drivers' emulated SPI time is subtracted from their CPU time; SPI costs no virtual time here,
so neither driver loses packets to slowness: on a Pi every transaction costs bus and syscall time.
With ``--speed`` the baseline's DIO0 callback runs inside the emulator's timer thread (like an
interrupt) while our driver reads from its own thread, which must win the GIL in time: at a few
times real speed ours then shows overruns the baseline cannot have; compare at ``--speed 1``.

    .venv/bin/python bench/radio.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import NaiveDriver
from gateway.radio.air import Link
from gateway.radio.emulator import FakeGPIO, installed_as_modules
from gateway.radio.packet import RxPacket
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig

DELIVERED = ("delivered", "delivered_crc_error", "delivered_corrupt")
LOST = (
    "lost_collision",
    "lost_injected",
    "lost_sensitivity",
    "lost_not_listening",
    "lost_aborted",
    "header_error",
)


def run(args: argparse.Namespace) -> dict[str, object]:
    config = LoRaConfig(sf=args.sf, bw_hz=round(args.bw * 1000))
    sim = RadioSim(nodes=0, config=config, seed=args.seed, use_dio0=not args.polling, speed=args.speed)
    rng = sim.air.rng
    naive_chip = sim.air.add_radio("naive-gateway")
    for _ in range(args.nodes):
        link = Link(path_loss_db=rng.uniform(80, 125), loss=args.loss)
        node = sim.add_node(link=link)
        sim.air.set_link(node.chip, naive_chip, link)

    # the baseline: a public-style driver on its own chip, DIO0 on a board of its own
    board = FakeGPIO(sim.clock)
    naive_chip.wire(board, None, {0: 22})
    with installed_as_modules(naive_chip, board):
        naive = NaiveDriver(dio0=22, frequency_hz=config.frequency_hz, sf=config.sf, bw_hz=config.bw_hz)
    naive.start()
    naive_handler = naive.on_rx_done
    naive_spent = {"service_s": 0.0, "emulator_s": 0.0}

    def timed_naive() -> None:
        emu0 = naive_chip.emulation_s
        t0 = time.perf_counter()
        naive_handler()
        naive_spent["service_s"] += time.perf_counter() - t0
        naive_spent["emulator_s"] += naive_chip.emulation_s - emu0

    naive.on_rx_done = timed_naive  # type: ignore[method-assign]

    # instrument the driver's packet path: wall time inside it, minus the emulator's share
    gw, chip = sim.gateway, sim.gateway_chip
    service = gw._service
    spent = {"service_s": 0.0, "emulator_s": 0.0, "spi_tx": 0, "spi_bytes": 0}

    def timed_service() -> None:
        emu0, tx0, by0 = chip.emulation_s, gw.spi.transactions, gw.spi.bytes
        t0 = time.perf_counter()
        service()
        spent["service_s"] += time.perf_counter() - t0
        spent["emulator_s"] += chip.emulation_s - emu0
        spent["spi_tx"] += gw.spi.transactions - tx0
        spent["spi_bytes"] += gw.spi.bytes - by0

    gw._service = timed_service  # type: ignore[method-assign]

    # offered load: Poisson arrivals, each from a node that is not already transmitting (offsets in s)
    schedule: list[tuple[float, int]] = []
    busy_until = [0.0] * args.nodes
    t = 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.duration:
            break
        free = [i for i in range(args.nodes) if busy_until[i] < t]
        if not free:
            continue
        node = rng.choice(free)
        busy_until[node] = t + config.time_on_air_s(args.payload) + 0.001
        schedule.append((t, node))

    tx0, bytes0 = gw.spi.transactions, gw.spi.bytes
    naive_tx0, naive_bytes0 = naive_chip.spi_transactions, naive_chip.spi_bytes
    packets: list[RxPacket] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            packet = gw.receive(0.05)
            if packet is not None:
                packets.append(packet)

    thread = threading.Thread(target=reader, daemon=True)
    if args.speed is not None:
        # the driver in its own thread, against a clock running at speed × real time: listening before
        # the traffic is scheduled, which starts a quarter of a real second later
        thread.start()
    lead = 0.01 if args.speed is None else 0.25 * args.speed
    start = sim.clock.monotonic()
    first = start + lead
    end = first + args.duration
    wall0 = time.perf_counter()
    for seq, (offset, node) in enumerate(schedule):
        sim.send_at(first + offset, node, seq.to_bytes(4, "big") + bytes(args.payload - 4))
    if args.speed is None:
        packets = sim.receive_all(end - sim.clock.monotonic() + 1.0)
    else:
        while sim.clock.monotonic() < end + 1.0:
            sim.clock.sleep(0.05)
        stop.set()
        thread.join(10)
    wall = time.perf_counter() - wall0
    received = len(packets)
    fates = sim.air.rx_stats["gateway"]
    heard_by_chip = sum(fates[k] for k in DELIVERED)
    lost_in_air = {k: fates[k] for k in LOST if fates[k]}
    sent = sim.air.stats["sent"]
    per = max(received, 1)
    ours = {
        "spi_transactions_per_packet": round((gw.spi.transactions - tx0) / per, 3),
        "spi_bytes_per_packet": round((gw.spi.bytes - bytes0) / per, 1),
        "driver_us_per_packet": round((spent["service_s"] - spent["emulator_s"]) / per * 1e6, 1),
    }
    naive_fates = sim.air.rx_stats[naive_chip.name]
    naive_heard = sum(naive_fates[k] for k in DELIVERED)
    naive_per = max(naive.rx_done, 1)
    baseline = {
        "driver": "public-style: one SPI transaction per register, FIFO one byte per transaction",
        "packets_received": naive.rx_done,
        "received_crc_ok": len(naive.received),
        "received_crc_failed_discarded": naive.crc_errors,
        "packets_lost": sent - naive.rx_done,
        "heard_by_chip": naive_heard,
        "lost_by_driver": naive_heard - naive.rx_done,
        "lost_in_air": {k: naive_fates[k] for k in LOST if naive_fates[k]},
        "spi_transactions_per_packet": round((naive_chip.spi_transactions - naive_tx0) / naive_per, 3),
        "spi_bytes_per_packet": round((naive_chip.spi_bytes - naive_bytes0) / naive_per, 1),
        "driver_us_per_packet": round(
            (naive_spent["service_s"] - naive_spent["emulator_s"]) / naive_per * 1e6, 1
        ),
        "emulated_spi_us_per_packet": round(naive_spent["emulator_s"] / naive_per * 1e6, 1),
    }
    ratios = {
        key: round(baseline[key] / ours[key], 2) if ours[key] else None  # type: ignore[operator]
        for key in ours
    }
    return {
        "scenario": f"{args.rate:g} packets/s offered, Poisson, {args.nodes} nodes, one channel",
        "sf": args.sf,
        "bw_hz": config.bw_hz,
        "payload_bytes": args.payload,
        "airtime_ms": round(config.time_on_air_s(args.payload) * 1000, 3),
        "duration_s": args.duration,
        "irq": "polling" if args.polling else "DIO0",
        "clock": "virtual, as fast as possible"
        if args.speed is None
        else f"virtual, {args.speed:g} x real time",
        "packets_sent": sent,
        "packets_received": received,
        "packets_lost": sent - received,
        "received_crc_ok": sum(1 for p in packets if p.crc.value == "ok"),
        "received_crc_failed": sum(1 for p in packets if p.crc.value == "failed"),
        "heard_by_chip": heard_by_chip,
        "lost_by_driver": heard_by_chip - received,
        "driver_overruns_detected": gw.stats.missed,
        "lost_in_air": lost_in_air,
        "every_loss_explained": sent == received + sum(lost_in_air.values())
        and heard_by_chip == received
        and gw.stats.missed == 0,
        **ours,
        "spi_transactions_in_packet_path": round(spent["spi_tx"] / per, 3),
        "emulated_spi_us_per_packet": round(spent["emulator_s"] / per * 1e6, 1),
        "driver_recoveries": gw.stats.recoveries,
        "wall_s": round(wall, 3),
        "virtual_s_per_wall_s": round((end + 1.0 - start) / wall, 2),
        "baseline": baseline,
        "ratios": {"baseline_over_ours": ratios},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0, help="offered packets per second (default 200)")
    p.add_argument("--duration", type=float, default=10.0, help="virtual seconds of traffic (default 10)")
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--sf", type=int, default=7)
    p.add_argument("--bw", type=float, default=500.0, help="kHz (default 500)")
    p.add_argument("--payload", type=int, default=16, help="bytes, at least 4 (default 16)")
    p.add_argument("--loss", type=float, default=0.01, help="injected loss per link (default 0.01)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--polling", action="store_true", help="no DIO0: poll the IRQ register")
    p.add_argument(
        "--speed", type=float, default=None, help="run the driver in a thread at speed × real time"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.payload < 4:
        p.error("--payload must be at least 4 bytes (a sequence number)")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
