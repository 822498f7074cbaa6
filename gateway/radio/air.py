"""The virtual air: emulated SX1276 chips hearing each other under a virtual clock.

A frame is heard only by chips in receive on the same frequency (within a quarter of the bandwidth),
spreading factor, bandwidth, sync word and IQ polarity (RegInvertIQ and RegInvertIQ2 together, see
``emulator.iq_polarity``), and only when its SNR is above the
demodulator limit. Time on air follows the datasheet formula. Each chip demodulates one frame at a
time; frames overlapping on one channel collide: a frame survives only when it is at least
``capture_db`` (6 dB) stronger than every other one (a stronger frame can take over the receiver
before the first frame's header is decoded); a collision after the header gives a payload CRC error,
as on the chip.
Mismatched LowDataRateOptimize, coding rate (implicit header) or CRC settings corrupt the payload the
way the chip would. Per link (transmitter → receiver): path loss, SNR, loss and bit-error injection.

Levels follow the datasheet's link budget: received power = the transmitter's output power (from its
PA registers) − path loss; noise in the channel = −174 dBm/Hz + 10·log10(BW) + NF (6 dB); packet SNR =
signal − (noise + interference in the channel), saturating at +12 dB as the chip's estimate does.
``interferers`` are continuous carriers (a neighbour's FSK link, a noisy power supply): each raises
the instantaneous RSSI of a receiver tuned within half its bandwidth of the carrier, and lowers the SNR
of every packet received there, so packets below the demodulator limit are lost.

Every frame's fate at every receiver that could have heard it is counted in ``stats`` (totals) and
``rx_stats[name]`` (per receiver): ``delivered``, ``delivered_crc_error``, ``lost_collision``,
``delivered_corrupt`` (no CRC to catch it), ``lost_injected``, ``lost_sensitivity``,
``lost_not_listening``, ``lost_aborted``, ``header_error``, ``collision_after_header`` (extra),
``not_heard_sync``, ``not_heard_iq``, ``not_heard_sf6``, ``lost_stalled``; ``sent`` counts frames.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from gateway.hw.clock import VirtualClock
from gateway.radio import regs
from gateway.radio.airtime import header_end_s, time_on_air_s
from gateway.radio.emulator import EmulatedSX1276, RadioParams, noise_floor_dbm

__all__ = ["Interferer", "Link", "VirtualAir", "VirtualClock"]

FREQ_TOLERANCE = 0.25  # fraction of the bandwidth a receiver tolerates as carrier offset
SNR_CEILING_DB = 12.0  # the demodulator's SNR estimate saturates for strong signals


@dataclass(frozen=True, slots=True)
class Link:
    """One direction of a radio link."""

    path_loss_db: float = 90.0
    snr_db: float | None = None  # None: from the received power and the thermal noise floor
    loss: float = 0.0  # probability that a frame vanishes on this link (injected loss)
    bit_error_rate: float = 0.0  # probability of each payload bit flipping

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or not 0.0 <= self.bit_error_rate <= 1.0:
            raise ValueError("loss and bit_error_rate are probabilities in 0..1")


@dataclass(frozen=True, slots=True)
class Interferer:
    """A continuous carrier at ``freq_hz``, received at ``rssi_dbm`` by every chip on the air."""

    freq_hz: float
    rssi_dbm: float


@dataclass(eq=False)
class _Frame:
    src: EmulatedSX1276
    params: RadioParams
    payload: bytes
    start: float
    end: float
    aborted: bool = False


@dataclass(eq=False)
class _Reception:
    frame: _Frame
    rx: EmulatedSX1276
    power_dbm: float
    snr_db: float
    epoch: int
    link: Link
    header_ok: bool = False
    done: bool = False
    handles: list[int] = field(default_factory=list)


class VirtualAir:
    """Shared medium for any number of ``EmulatedSX1276`` chips (create them with ``add_radio``)."""

    def __init__(
        self,
        clock: VirtualClock | None = None,
        seed: int = 0,
        default_link: Link | None = None,
        noise_figure_db: float = 6.0,
        capture_db: float = 6.0,
        interferers: tuple[Interferer, ...] | list[Interferer] = (),
    ) -> None:
        self.clock = clock or VirtualClock()
        self.interferers: list[Interferer] = list(interferers)
        self.rng = random.Random(seed)
        self.default_link = default_link or Link()
        self.noise_figure_db = noise_figure_db
        self.capture_db = capture_db
        self.radios: list[EmulatedSX1276] = []
        self._links: dict[tuple[str, str], Link] = {}
        self._frames: list[_Frame] = []
        self._receptions: list[_Reception] = []
        self._locked: dict[str, _Reception] = {}
        self._lock = self.clock.lock  # one lock for clock, air and chips: no lock-order deadlocks
        self.stats: Counter[str] = Counter()
        self.rx_stats: dict[str, Counter[str]] = {}

    # ------------------------------------------------------------------ set-up
    def add_radio(self, name: str | None = None) -> EmulatedSX1276:
        chip = EmulatedSX1276(air=self, name=name or f"radio{len(self.radios)}")
        self.attach(chip)
        return chip

    def attach(self, chip: EmulatedSX1276) -> None:
        if any(r.name == chip.name for r in self.radios):
            raise ValueError(f"a radio named {chip.name!r} is already on the air")
        chip.air = self
        chip.clock = self.clock
        chip._lock = self.clock.lock
        self.radios.append(chip)
        self.rx_stats[chip.name] = Counter()

    def set_link(self, a: EmulatedSX1276, b: EmulatedSX1276, link: Link, both_ways: bool = True) -> None:
        self._links[(a.name, b.name)] = link
        if both_ways:
            self._links[(b.name, a.name)] = link

    def link(self, src: EmulatedSX1276, dst: EmulatedSX1276) -> Link:
        return self._links.get((src.name, dst.name), self.default_link)

    # ------------------------------------------------------------------ called by the chips
    def start_tx(self, chip: EmulatedSX1276, params: RadioParams, payload: bytes) -> None:
        with self._lock:
            now = self.clock.monotonic()
            toa = time_on_air_s(
                len(payload),
                params.sf,
                params.bw_hz,
                params.cr_code + 4,
                params.preamble,
                params.implicit,
                params.crc,
                params.ldro,
            )
            frame = _Frame(chip, params, payload, now, now + toa)
            self._prune(now)
            self._frames.append(frame)
            self.stats["sent"] += 1
            for rx in self.radios:
                if rx is not chip:
                    self._consider(frame, rx)

    def abort_tx(self, chip: EmulatedSX1276) -> None:
        with self._lock:
            now = self.clock.monotonic()
            for frame in self._frames:
                if frame.src is chip and frame.end > now and not frame.aborted:
                    frame.aborted = True
                    frame.end = now
                    for rec in self._receptions:
                        if rec.frame is frame and not rec.done:
                            self._finish(rec, "lost_aborted")

    def channel_active(self, chip: EmulatedSX1276) -> bool:
        """CAD: a LoRa preamble or frame of this channel is on the air and above the SNR limit."""
        with self._lock:
            now = self.clock.monotonic()
            p = chip.params()
            for frame in self._frames:
                if (
                    frame.start <= now <= frame.end
                    and not frame.aborted
                    and self._same_channel(frame.params, p)
                ):
                    _, snr = self._levels(frame, chip)
                    if snr >= regs.SNR_LIMIT_DB[p.sf]:
                        return True
            return False

    def current_rssi_dbm(self, chip: EmulatedSX1276) -> float:
        with self._lock:
            now = self.clock.monotonic()
            p = chip.params()
            total_mw = self._noise_mw(p)
            for frame in self._frames:
                if frame.start <= now <= frame.end and not frame.aborted and self._near(frame.params, p):
                    total_mw += 10 ** (self._levels(frame, chip)[0] / 10)
            return 10 * math.log10(total_mw)

    # ------------------------------------------------------------------ reception
    def _consider(self, frame: _Frame, rx: EmulatedSX1276) -> None:
        tx, rp = frame.params, rx.params()
        if not rp.lora or not self._same_channel(tx, rp):
            return  # another channel: not counted anywhere
        if not rx.is_receiving():
            self._count(rx, "lost_not_listening")
            return
        if tx.sync_word != rp.sync_word:
            self._count(rx, "not_heard_sync")
            return
        if tx.iq_tx_inverted is None or rp.iq_rx_inverted is None or tx.iq_tx_inverted != rp.iq_rx_inverted:
            self._count(rx, "not_heard_iq")
            return
        if rp.sf == 6 and (
            not rp.implicit
            or rp.detect_optimize != regs.DETECT_OPTIMIZE_SF6
            or rp.detection_threshold != regs.DETECTION_THRESHOLD_SF6
        ):
            self._count(rx, "not_heard_sf6")  # SF6 needs implicit header and the SF6 detection settings
            return
        link = self.link(frame.src, rx)
        power, snr = self._levels(frame, rx)
        if snr < regs.SNR_LIMIT_DB[rp.sf]:
            self._count(rx, "lost_sensitivity")
            return
        if link.loss > 0 and self.rng.random() < link.loss:
            self._count(rx, "lost_injected")
            return
        rec = _Reception(frame, rx, power, snr, rx.rx_epoch, link)
        # One demodulator per chip: a frame arriving while another is being received is lost, unless it
        # is capture_db stronger and the first has not got past its header yet (capture).
        current = self._locked.get(rx.name)
        if current is not None and not current.done:
            if current.header_ok or power < current.power_dbm + self.capture_db:
                self._count(rx, "lost_collision")
                return
            self._finish(current, "lost_collision")
        self._locked[rx.name] = rec
        self._receptions.append(rec)
        rx.rx_started()
        if not tx.implicit and not rp.implicit:
            t_header = frame.start + header_end_s(tx.sf, tx.bw_hz, tx.preamble)
            rec.handles.append(self.clock.call_at(min(t_header, frame.end), lambda: self._header(rec)))
        rec.handles.append(self.clock.call_at(frame.end, lambda: self._end(rec)))

    def _header(self, rec: _Reception) -> None:
        with self._lock:
            if rec.done:
                return
            if rec.rx.rx_epoch != rec.epoch or rec.rx.is_stalled():
                self._finish(rec, "lost_stalled" if rec.rx.is_stalled() else "lost_not_listening")
                return
            if self._killed(rec, rec.frame.start, self.clock.monotonic()):
                self._finish(rec, "lost_collision")
                return
            if len(rec.frame.payload) > rec.rx.params().max_payload_length:
                self._finish(rec, "header_error")  # longer than RegMaxPayloadLength: header CRC error
                return
            rec.header_ok = True
            if not rec.rx.rx_header(rec.frame.params.cr_code):
                self._finish(rec, "lost_stalled")

    def _end(self, rec: _Reception) -> None:
        with self._lock:
            if rec.done:
                return
            frame, rx = rec.frame, rec.rx
            tx, rp = frame.params, rx.params()
            if rx.rx_epoch != rec.epoch or rx.is_stalled():
                self._finish(rec, "lost_stalled" if rx.is_stalled() else "lost_not_listening")
                return
            explicit_both = not tx.implicit and not rp.implicit
            if tx.implicit and not rp.implicit:
                self._finish(rec, "header_error")  # the receiver looks for a header that was never sent
                return
            collided = self._killed(rec, frame.start, frame.end)
            if collided and not (explicit_both and rec.header_ok):
                self._finish(rec, "lost_collision")
                return
            payload = bytearray(frame.payload)
            corrupt = collided
            if explicit_both:
                crc_on, cr_code = tx.crc, tx.cr_code
            else:
                crc_on, cr_code = rp.crc, rp.cr_code
                if not tx.implicit:  # explicit frame, implicit receiver: header symbols read as payload
                    corrupt = True
                if tx.cr_code != rp.cr_code:
                    corrupt = True
                if len(payload) != rp.payload_length:
                    payload = (payload + bytes(max(0, rp.payload_length - len(payload))))[: rp.payload_length]
                    corrupt = True
                if rp.crc and not tx.crc:
                    corrupt = True  # the receiver checks two bytes that are not a CRC
            if tx.ldro != rp.ldro:
                corrupt = True  # symbols demodulated with the wrong bits per symbol
            if rec.link.bit_error_rate > 0:
                flips = self._flip_bits(payload, rec.link.bit_error_rate)
                corrupt = corrupt or flips > 0
            if corrupt and payload == bytearray(frame.payload):
                self._scramble(payload)
            crc_error = crc_on and corrupt
            fate = (
                "delivered_crc_error" if crc_error else ("delivered" if not corrupt else "delivered_corrupt")
            )
            if collided:
                self._count(rx, "collision_after_header")
            rec.done = True
            self._count(rx, fate)
            self._receptions.remove(rec)
            self._unlock(rec)
            fei = tx.frequency_hz - rp.rx_frequency_hz
            rx.rx_done(bytes(payload), crc_on, crc_error, cr_code, rec.snr_db, rec.power_dbm, fei)

    def _finish(self, rec: _Reception, fate: str) -> None:
        rec.done = True
        for handle in rec.handles:
            self.clock.cancel(handle)
        if rec in self._receptions:
            self._receptions.remove(rec)
        self._unlock(rec)
        if rec.rx.rx_epoch == rec.epoch:
            rec.rx.rx_aborted()
        self._count(rec.rx, fate)

    def _unlock(self, rec: _Reception) -> None:
        if self._locked.get(rec.rx.name) is rec:
            del self._locked[rec.rx.name]

    def _killed(self, rec: _Reception, t0: float, t1: float) -> bool:
        """Another frame on this channel overlapped [t0, t1] without being ``capture_db`` weaker."""
        rp = rec.rx.params()
        for other in self._frames:
            if other is rec.frame or other.src is rec.rx:
                continue
            if other.start < t1 and other.end > t0 and self._same_channel(other.params, rp):
                power, _ = self._levels(other, rec.rx)
                if rec.power_dbm < power + self.capture_db:
                    return True
        return False

    # ------------------------------------------------------------------ helpers
    def _noise_mw(self, rp: RadioParams) -> float:
        """Thermal noise plus every interferer inside the receiver's channel, in mW."""
        total = 10 ** (noise_floor_dbm(rp.bw_hz, self.noise_figure_db) / 10)
        for carrier in self.interferers:
            if abs(carrier.freq_hz - rp.rx_frequency_hz) <= rp.bw_hz / 2:
                total += 10 ** (carrier.rssi_dbm / 10)
        return total

    def _levels(self, frame: _Frame, rx: EmulatedSX1276) -> tuple[float, float]:
        link = self.link(frame.src, rx)
        power = frame.params.power_dbm - link.path_loss_db
        if link.snr_db is not None:
            return power, link.snr_db
        if self.interferers:
            noise = 10 * math.log10(self._noise_mw(rx.params()))
        else:  # the common case, kept cheap: the same channel has the transmitter's bandwidth
            noise = noise_floor_dbm(frame.params.bw_hz, self.noise_figure_db)
        return power, min(power - noise, SNR_CEILING_DB)

    @staticmethod
    def _same_channel(tx: RadioParams, rx: RadioParams) -> bool:
        return (
            tx.sf == rx.sf
            and abs(tx.bw_hz - rx.bw_hz) < 1
            and abs(tx.frequency_hz - rx.rx_frequency_hz) <= FREQ_TOLERANCE * rx.bw_hz
        )

    @staticmethod
    def _near(tx: RadioParams, rx: RadioParams) -> bool:
        return abs(tx.frequency_hz - rx.rx_frequency_hz) <= (tx.bw_hz + rx.bw_hz) / 2

    def _flip_bits(self, payload: bytearray, ber: float) -> int:
        flips = 0
        for i in range(len(payload)):
            for bit in range(8):
                if self.rng.random() < ber:
                    payload[i] ^= 1 << bit
                    flips += 1
        return flips

    def _scramble(self, payload: bytearray) -> None:
        if not payload:
            return
        for i in range(len(payload)):
            payload[i] ^= self.rng.randrange(1, 256)

    def _count(self, rx: EmulatedSX1276, fate: str) -> None:
        self.stats[fate] += 1
        self.rx_stats[rx.name][fate] += 1

    def _prune(self, now: float) -> None:
        oldest_active = min((r.frame.start for r in self._receptions), default=now)
        self._frames = [f for f in self._frames if f.end >= oldest_active]
