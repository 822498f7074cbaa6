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

Driver CPU per packet is thread CPU time (``time.thread_time``, so other threads and processes on
a loaded host do not count) of each driver's packet path: our reader thread's ``_service`` and the
baseline's DIO0 callback (which runs on the GPIO callback thread, as with RPi.GPIO). During the
run every SPI answer on those paths is recorded; afterwards each path is replayed on the recorded
answers (fastest of 21), so neither the emulator nor per-frame clock readings are inside the figure.
``live_thread_cpu_us_per_packet_emulator_included`` is the same threads' CPU time measured live,
the emulated chip's work inside it. SPI costs no virtual time here, so neither driver loses
packets to slowness; ``modelled_pi`` adds what the bus would cost on a Raspberry Pi (see
``SPI_MODEL``) to each driver's measured CPU.

After the receive run the gateway transmits ``--tx`` packets (receiving again after each):
``tx_spi_transactions_per_packet`` counts every transaction from ``transmit()`` to receive mode,
``tx_decision_to_mode_us`` the wall time from the ``transmit()`` call to the TX mode write.

    .venv/bin/python bench/radio.py --json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import NaiveDriver
from gateway.radio.air import Link
from gateway.radio.emulator import FakeGPIO, installed_as_modules
from gateway.radio.packet import RxPacket
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig

# Modelled Raspberry Pi SPI cost (added to each driver's measured CPU per packet):
# - per transaction: 15 µs, the mean of the 10.7 µs and 19.3 µs chip-select-high gaps measured on a
#   Pi between back-to-back spidev transfers from C (raspberrypi/linux issue #4567); Python's
#   spidev call comes on top, so this is a floor (it favours the baseline, which makes 7x more calls);
# - per byte: 8 bits at the driver's configured SCK (ours 8 MHz: 1.0 µs; the baseline 5 MHz: 1.6 µs).
#   spi-bcm2835 busy-polls transfers shorter than 30 µs (its polling mode, kernel patch "spi: bcm2835:
#   fallback to interrupt for polling timeouts exceeding 2 jiffies"), so the byte time is CPU time.
SPI_MODEL = {
    "per_transaction_us": 15.0,
    "per_transaction_source": "raspberrypi/linux#4567: CS-high gap 10.7/19.3 us between back-to-back "
    "spidev transfers on a Pi (mean 15 us); a floor, Python's call overhead excluded",
    "per_byte_us": "8 / SCK in MHz (ours 8 MHz: 1.0 us, baseline 5 MHz: 1.6 us)",
    "per_byte_source": "spi-bcm2835 polls transfers under 30 us, so the bus time is CPU time",
}
PER_TRANSACTION_US = 15.0
OUR_SCK_HZ = 8_000_000
BASELINE_SCK_HZ = 5_000_000

DELIVERED = ("delivered", "delivered_crc_error", "delivered_corrupt")
LOST = (
    "lost_collision",
    "lost_injected",
    "lost_sensitivity",
    "lost_not_listening",
    "lost_aborted",
    "header_error",
)


class Replay:
    """An ``SpiDev`` stand-in that answers each frame with the MISO bytes recorded in the run."""

    def __init__(self) -> None:
        self.answers: Iterator[list[int]] = iter(())

    def xfer2(self, data: list[int], *args: int) -> list[int]:
        return next(self.answers)

    xfer = xfer2


def recorder(dev: Any, calls: list[tuple[Any, list[list[int]]]], active: list[bool]) -> None:
    """Record, on ``dev`` (a fake SpiDev), the answer to every frame while ``active[0]`` is set."""
    for name in ("xfer", "xfer2"):
        inner = getattr(dev, name)

        def recorded(data: list[int], *args: int, _inner: Any = inner) -> list[int]:
            out = _inner(data, *args)
            if active[0]:
                calls[-1][1].append(list(out))
            return out

        setattr(dev, name, recorded)


def replay_cpu_s(
    calls: list[tuple[Any, list[list[int]]]], setup: Any, run_one: Any, repeats: int = 21
) -> float:
    """Thread CPU time of replaying every recorded packet-path call, less the loop's own cost
    (the same loop with a no-op packet path): the fastest of ``repeats`` runs of each, since
    noise on a shared host only ever adds time."""
    stub = Replay()

    def once(fn: Any) -> float:
        t0 = time.thread_time()
        for state, answers in calls:
            stub.answers = iter(answers)
            setup(stub, state)
            fn()
        return time.thread_time() - t0

    busy = min(once(run_one) for _ in range(repeats))
    idle = min(once(lambda: None) for _ in range(repeats))
    return max(busy - idle, 0.0)


def modelled_pi_us(cpu_us: float, transactions: float, spi_bytes: float, sck_hz: int) -> float:
    return round(cpu_us + transactions * PER_TRANSACTION_US + spi_bytes * 8e6 / sck_hz, 1)


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
    naive_calls: list[tuple[Any, list[list[int]]]] = []
    naive_active = [False]
    recorder(naive.spi, naive_calls, naive_active)
    naive_spent = {"emulator_s": 0.0, "thread_s": 0.0}

    def timed_naive() -> None:  # on the GPIO callback thread
        emu0 = naive_chip.emulation_s
        naive_calls.append((None, []))
        naive_active[0] = True
        t0 = time.thread_time()
        naive_handler()
        naive_spent["thread_s"] += time.thread_time() - t0
        naive_active[0] = False
        naive_spent["emulator_s"] += naive_chip.emulation_s - emu0

    naive.on_rx_done = timed_naive  # type: ignore[method-assign]

    # instrument the driver's packet path: record what the bus answered, for the CPU replay below
    gw, chip = sim.gateway, sim.gateway_chip
    service = gw._service
    our_calls: list[tuple[Any, list[list[int]]]] = []
    our_active = [False]
    recorder(gw.spi._dev, our_calls, our_active)
    spent = {"emulator_s": 0.0, "spi_tx": 0, "spi_bytes": 0, "thread_s": 0.0}

    def timed_service() -> None:
        emu0, tx0, by0 = chip.emulation_s, gw.spi.transactions, gw.spi.bytes
        our_calls.append(((gw._edge_time, gw._last_header_cnt, gw._status), []))
        our_active[0] = True
        t0 = time.thread_time()
        service()
        spent["thread_s"] += time.thread_time() - t0
        our_active[0] = False
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
    stats = copy.deepcopy(gw.stats)
    live_dev, live_counts = gw.spi._dev, (gw.spi.transactions, gw.spi.bytes)

    def our_setup(stub: Replay, state: tuple[Any, int, Any]) -> None:
        gw.spi._dev = stub
        gw._edge_time, gw._last_header_cnt, gw._status = state

    ours_cpu_s = replay_cpu_s(our_calls, our_setup, service)
    gw.spi._dev, gw.stats = live_dev, stats
    gw._ready.clear()
    gw.spi.transactions, gw.spi.bytes = live_counts
    ours_tx = (gw.spi.transactions - tx0) / per
    ours_bytes = (gw.spi.bytes - bytes0) / per
    ours_cpu_us = round(ours_cpu_s / per * 1e6, 1)
    ours = {
        "spi_transactions_per_packet": round(ours_tx, 3),
        "spi_bytes_per_packet": round(ours_bytes, 1),
        "driver_us_per_packet": ours_cpu_us,
        "modelled_pi_us_per_packet": modelled_pi_us(ours_cpu_us, ours_tx, ours_bytes, OUR_SCK_HZ),
    }
    naive_fates = sim.air.rx_stats[naive_chip.name]
    naive_heard = sum(naive_fates[k] for k in DELIVERED)
    naive_per = max(naive.rx_done, 1)
    live_spi = naive.spi
    naive_received, naive_crc, naive_done = list(naive.received), naive.crc_errors, naive.rx_done

    def naive_setup(stub: Replay, state: object) -> None:
        naive.spi = stub

    naive_cpu_s = replay_cpu_s(naive_calls, naive_setup, naive_handler)
    naive.spi = live_spi
    naive.received, naive.crc_errors, naive.rx_done = naive_received, naive_crc, naive_done
    naive_tx = (naive_chip.spi_transactions - naive_tx0) / naive_per
    naive_bytes = (naive_chip.spi_bytes - naive_bytes0) / naive_per
    naive_cpu_us = round(naive_cpu_s / naive_per * 1e6, 1)
    baseline = {
        "driver": "public-style: one SPI transaction per register, FIFO one byte per transaction",
        "packets_received": naive.rx_done,
        "received_crc_ok": len(naive.received),
        "received_crc_failed_discarded": naive.crc_errors,
        "packets_lost": sent - naive.rx_done,
        "heard_by_chip": naive_heard,
        "lost_by_driver": naive_heard - naive.rx_done,
        "lost_in_air": {k: naive_fates[k] for k in LOST if naive_fates[k]},
        "spi_transactions_per_packet": round(naive_tx, 3),
        "spi_bytes_per_packet": round(naive_bytes, 1),
        "driver_us_per_packet": naive_cpu_us,
        "modelled_pi_us_per_packet": modelled_pi_us(naive_cpu_us, naive_tx, naive_bytes, BASELINE_SCK_HZ),
        "emulated_spi_us_per_packet": round(naive_spent["emulator_s"] / naive_per * 1e6, 1),
        "live_thread_cpu_us_per_packet_emulator_included": round(
            naive_spent["thread_s"] / naive_per * 1e6, 1
        ),
    }
    ratios = {
        key: round(baseline[key] / ours[key], 2) if ours[key] else None  # type: ignore[operator]
        for key in ours
    }
    ours_over_baseline = {
        key: round(ours[key] / baseline[key], 2) if baseline[key] else None  # type: ignore[operator]
        for key in ("driver_us_per_packet", "modelled_pi_us_per_packet")
    }
    tx = transmit_figures(sim, args)
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
        "live_thread_cpu_us_per_packet_emulator_included": round(spent["thread_s"] / per * 1e6, 1),
        "driver_recoveries": gw.stats.recoveries,
        "wall_s": round(wall, 3),
        "virtual_s_per_wall_s": round((end + 1.0 - start) / wall, 2),
        **tx,
        "cpu_clock": "time.thread_time of each driver's packet path, replayed on the SPI answers "
        "recorded in this run (fastest of 21; the emulator and the clock readings are not inside it)",
        "spi_model": SPI_MODEL,
        "baseline": baseline,
        "ratios": {"baseline_over_ours": ratios, "ours_over_baseline": ours_over_baseline},
    }


def transmit_figures(sim: RadioSim, args: argparse.Namespace) -> dict[str, object]:
    """The gateway transmits ``args.tx`` packets from receive, returning to receive after each."""
    gw = sim.gateway
    counts, times = [], []
    for i in range(args.tx):
        tx0 = gw.spi.transactions
        gw.transmit(i.to_bytes(4, "big") + bytes(max(args.payload - 4, 0)))
        counts.append(gw.spi.transactions - tx0)
        decided = getattr(gw, "last_tx_decision_to_mode_s", None)  # absent in older drivers
        if decided is not None:
            times.append(decided)
    if not counts:
        return {}
    times.sort()
    if not times:
        times = [float("nan")]
    return {
        "tx_packets": len(counts),
        "tx_spi_transactions_per_packet": round(sum(counts) / len(counts), 3),
        "tx_decision_to_mode_us": {
            "median": round(times[len(times) // 2] * 1e6, 1),
            "max": round(times[-1] * 1e6, 1),
            "note": "wall time on this host, emulated SPI included; 6 SPI transactions up to the mode "
            "write from standby, 7 from receive",
        },
    }


def downlink_figures(args: argparse.Namespace) -> dict[str, object]:
    """Class A windows on the emulator's clock: a node uplinks, the gateway's radio-thread runner
    (gateway.downlink.scheduler) transmits the downlink at RxDone + 1 s, the node (inverted IQ)
    receives it; the start error is the node's RxDone − time on air − the scheduled window."""
    from gateway.downlink.scheduler import TxQueue, TxRequest, TxRunner
    from gateway.frames.downlink import DownlinkEncoder

    gw_cfg = LoRaConfig(sf=args.sf, bw_hz=int(args.bw * 1000), invert_iq_tx=True)
    sim = RadioSim(nodes=0, config=gw_cfg, seed=args.seed)
    node_cfg = LoRaConfig(sf=args.sf, bw_hz=int(args.bw * 1000), invert_iq_rx=True)
    node = sim.add_node("dl-node", config=node_cfg)
    queue = TxQueue()
    runner = TxRunner(sim.gateway, sim.clock, queue)
    enc = DownlinkEncoder(0x1234, bytes(16))
    errors, heard, tx_counts = [], 0, []
    try:
        for i in range(max(args.tx // 5, 1)):
            node.send(i.to_bytes(4, "big") + bytes(max(args.payload - 4, 0)))
            up = sim.gateway.receive(1.0)
            if up is None:
                continue
            due = up.monotonic_s + 1.0
            queue.put(TxRequest(due, enc.ack(i, i), 0x1234, "ack"))
            node.radio.start_receive()
            tx0 = sim.gateway.spi.transactions
            while sim.clock.monotonic() < due + 0.1:
                runner.receive(due + 0.1 - sim.clock.monotonic())
            tx_counts.append(sim.gateway.spi.transactions - tx0)
            got = node.radio.receive(0.5)
            node.radio.standby()
            if got is not None:
                heard += 1
                errors.append(abs(got.monotonic_s - gw_cfg.time_on_air_s(len(got.payload)) - due))
    finally:
        sim.close()
    return {
        "downlink_windows": len(errors),
        "downlink_heard_by_node": heard,
        "downlink_window_max_start_error_ms": round(max(errors) * 1e3, 4) if errors else None,
        "downlink_missed_windows": runner.stats.missed,
        "downlink_note": "manual virtual clock; the radio thread's runner receives until 20 ms before the"
        " window, then transmits at RxDone + 1 s (the SPI of that wait is in the count below)",
        "downlink_spi_transactions_per_window": round(sum(tx_counts) / len(tx_counts), 1)
        if tx_counts
        else None,
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
    p.add_argument("--tx", type=int, default=50, help="packets the gateway transmits after (default 50)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.payload < 4:
        p.error("--payload must be at least 4 bytes (a sequence number)")
    result = run(args)
    result.update(downlink_figures(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
