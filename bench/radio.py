"""Radio benchmark: packets through the emulated air, chips and the real SX1276 driver.

Nodes (each an SX1276 driver over its own emulated chip, at random distances) offer Poisson traffic
on one channel at ``--rate`` packets/s, more than one SX1276 can carry, so the air loses frames to
collisions. The benchmark checks that the driver loses none of the frames the chip received and
that every lost frame is explained by the air, and measures the driver's SPI cost and CPU time.

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

from gateway.radio.air import Link
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
    for _ in range(args.nodes):
        sim.add_node(link=Link(path_loss_db=rng.uniform(80, 125), loss=args.loss))

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

    # offered load: Poisson arrivals, each from a node that is not already transmitting
    start = sim.clock.monotonic()
    t = start + 0.01
    end = t + args.duration
    schedule: list[tuple[float, int]] = []
    busy_until = [0.0] * args.nodes
    seq = 0
    while True:
        t += rng.expovariate(args.rate)
        if t >= end:
            break
        free = [i for i in range(args.nodes) if busy_until[i] < t]
        if not free:
            continue
        node = rng.choice(free)
        busy_until[node] = t + config.time_on_air_s(args.payload) + 0.001
        schedule.append((t, node))
        sim.send_at(t, node, seq.to_bytes(4, "big") + bytes(args.payload - 4))
        seq += 1

    tx0, bytes0 = gw.spi.transactions, gw.spi.bytes
    wall0 = time.perf_counter()
    if args.speed is None:
        packets = sim.receive_all(end - sim.clock.monotonic() + 1.0)
    else:  # the driver in its own thread, against a clock running at speed × real time
        packets = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                packet = gw.receive(0.05)
                if packet is not None:
                    packets.append(packet)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
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
        "received_crc_ok": sum(1 for p in packets if p.crc.value == "ok"),
        "received_crc_failed": sum(1 for p in packets if p.crc.value == "failed"),
        "heard_by_chip": heard_by_chip,
        "lost_by_driver": heard_by_chip - received,
        "driver_overruns_detected": gw.stats.missed,
        "lost_in_air": lost_in_air,
        "every_loss_explained": sent == received + sum(lost_in_air.values())
        and heard_by_chip == received
        and gw.stats.missed == 0,
        "spi_transactions_per_packet": round((gw.spi.transactions - tx0) / per, 3),
        "spi_bytes_per_packet": round((gw.spi.bytes - bytes0) / per, 1),
        "spi_transactions_in_packet_path": round(spent["spi_tx"] / per, 3),
        "driver_us_per_packet": round((spent["service_s"] - spent["emulator_s"]) / per * 1e6, 1),
        "emulated_spi_us_per_packet": round(spent["emulator_s"] / per * 1e6, 1),
        "driver_recoveries": gw.stats.recoveries,
        "wall_s": round(wall, 3),
        "virtual_s_per_wall_s": round((end + 1.0 - start) / wall, 2),
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
