from __future__ import annotations

import threading
import time

import pytest

from gateway.service.core import Waker
from gateway.sinks.mqtt import Delivery, MqttSettings, MqttSink, Unpublishable
from gateway.sinks.url import parse_broker_url

from .conftest import free_port
from .helpers import Collector

STATUS = "lora/gw/status"


def make_sink(port: int, protocol: str = "5", **kw) -> MqttSink:
    s = MqttSettings(
        broker=parse_broker_url(f"mqtt://127.0.0.1:{port}"),
        client_id=f"test-gw-{protocol}",
        status_topic=STATUS,
        protocol=protocol,
        reconnect_min_s=1,
        reconnect_max_s=1,
        **kw,
    )
    sink = MqttSink(s)
    sink.start()
    return sink


def wait_connected(sink: MqttSink, timeout_s: float = 10.0) -> None:
    """Drive the sink as the core thread does (there is no network thread) until it is connected."""
    deadline = time.monotonic() + timeout_s
    while not sink.connected:
        assert time.monotonic() < deadline, "sink did not connect"
        sink.wait(0.01)
        sink.poll()
        sink.check_health()


def collect(sink: MqttSink, n: int, timeout_s: float = 10.0) -> list[Delivery]:
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        sink.wait(0.005)
        out += sink.poll()
        out += sink.check_health()
    return out


def test_publish_delivered_status_online_then_offline(broker):
    sub = Collector(broker.port)
    sink = make_sink(broker.port)
    wait_connected(sink)
    for i in range(50):
        assert sink.publish("lora/gw/nodes/1/telemetry", b'{"n":%d}' % i, token=i)
    got = collect(sink, 50)
    assert sorted(d.token for d in got if d.ok) == list(range(50))
    assert sink.stats.delivered == 50 and sink.inflight == 0
    assert sub.wait_for(lambda: len(sub.payloads("lora/gw/nodes/1/telemetry")) == 50)
    sink.stop()
    assert sub.wait_for(lambda: sub.payloads(STATUS)[-1:] == [b"offline"])
    assert sub.payloads(STATUS)[0] == b"online"
    # retained: a late subscriber sees the last availability at once
    late = Collector(broker.port, STATUS)
    assert late.wait_for(lambda: late.messages and late.messages[-1][1:] == (b"offline", True))
    sub.close()
    late.close()


def test_acl_refusal_is_not_counted_delivered(broker_factory):
    b = broker_factory(acl="topic write lora/gw/status\ntopic write lora/gw/nodes/1/#\ntopic read #\n")
    sink = make_sink(b.port)
    wait_connected(sink)
    assert sink.publish("lora/gw/nodes/1/telemetry", b"allowed", token="a")
    assert sink.publish("lora/gw/nodes/2/telemetry", b"denied", token="d")
    got = {d.token: d for d in collect(sink, 2)}
    assert got["a"].ok
    assert got["d"].status == "refused" and not got["d"].ok and "authorized" in got["d"].reason.lower()
    assert sink.stats.delivered == 1 and sink.stats.refused == 1
    sink.stop()


def test_no_matching_subscribers_is_success(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    sink.publish("nobody/listens", b"x", token=1)
    (d,) = collect(sink, 1)
    assert d.ok  # v5 reason 0x10 is a success
    sink.stop()


def test_broker_outage_then_restart_delivers_everything(broker):
    sub_port = broker.port
    sink = make_sink(broker.port)
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"before", token=0)
    assert [d.token for d in collect(sink, 1)] == [0]
    broker.stop()
    deadline = time.monotonic() + 10
    while sink.connected and time.monotonic() < deadline:
        sink.wait(0.01)
        sink.poll()
    assert not sink.connected and not sink.can_publish  # the owner keeps frames in the outbox meanwhile
    broker.start()
    sub = Collector(sub_port)
    wait_connected(sink, 15)
    for i in range(1, 21):
        assert sink.publish("lora/gw/x", b"after%d" % i, token=i)
    got = collect(sink, 20)
    assert sorted(d.token for d in got if d.ok) == list(range(1, 21))
    assert sink.stats.disconnects >= 1 and sink.stats.connects >= 2
    assert sub.wait_for(lambda: len(sub.payloads("lora/gw/x")) == 20)
    sink.stop()
    sub.close()


def test_wait_returns_when_the_owners_wake_fd_is_written(broker):
    waker = Waker()
    sink = make_sink(broker.port)
    wait_connected(sink)
    for _ in range(5):
        sink.wait(0.05)  # the "online" status and its PUBACK: nothing more comes from the broker
    for s in (sink, MqttSink(sink.settings)):  # connected (select over the broker socket too), never started
        t = threading.Thread(target=s.wait, args=(30.0, waker.fileno()))
        t.start()
        time.sleep(0.1)
        assert t.is_alive()  # asleep in select()
        waker.wake()
        t.join(5)
        assert not t.is_alive()
        waker.clear()
    sink.stop()
    waker.close()


def test_no_network_thread_of_its_own(broker):
    before = set(threading.enumerate())
    sink = make_sink(broker.port)
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"1", token=1)
    assert [d.token for d in collect(sink, 1) if d.ok] == [1]
    assert set(threading.enumerate()) == before  # paho is driven by the owner thread only
    sink.stop()


class PahoBug(RuntimeError):
    pass


def test_exception_out_of_paho_is_noticed_client_rebuilt_inflight_retried(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    client = sink._client

    def crash(cmd):
        raise PahoBug("boom while handling " + cmd)

    client._handle_pubackcomp = crash  # the next PUBACK makes paho's read step raise
    assert sink.publish("lora/gw/x", b"1", token=1)
    got = collect(sink, 1)
    assert [(d.token, d.status) for d in got] == [(1, "retry")] and "PahoBug" in got[0].reason
    assert sink.stats.loop_restarts == 1 and sink._client is not client
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"2", token=2)
    assert [d.token for d in collect(sink, 1) if d.ok] == [2]
    assert sink.stats.loop_restarts == 1
    sink.stop()


def test_socket_closed_under_paho_is_noticed_and_client_rebuilt(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    sink.wait(0.05)  # nothing left to write
    sink._client.socket().close()  # the descriptor is gone while paho still believes it is connected
    deadline = time.monotonic() + 5
    while sink.stats.loop_restarts == 0 and time.monotonic() < deadline:
        sink.wait(0.01)
        sink.check_health()
    assert sink.stats.loop_restarts == 1 and not sink.connected
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"2", token=2)
    assert [d.token for d in collect(sink, 1) if d.ok] == [2]
    sink.stop()


def test_socket_dead_with_a_queued_publish_reconnects_and_resends(broker):
    sub = Collector(broker.port, "lora/gw/x")
    sink = make_sink(broker.port)
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"1", token=1)  # queued, not yet written
    sink._client.socket().close()
    got = collect(sink, 1)
    assert [(d.token, d.status) for d in got] == [(1, "ok")]  # paho kept it and sent it after reconnecting
    assert sink.stats.disconnects == 1 and sink.stats.connects == 2 and sink.stats.loop_restarts == 0
    assert sub.wait_for(lambda: sub.payloads("lora/gw/x") == [b"1"])
    sink.stop()
    sub.close()


def test_stalled_loop_returns_inflight_for_retry(broker):
    sink = make_sink(broker.port, ack_timeout_s=1.0)
    wait_connected(sink)
    broker.proc.send_signal(19)  # SIGSTOP: the TCP connection stays up, PUBACKs stop coming
    try:
        assert sink.publish("lora/gw/x", b"1", token=7)
        deadline = time.monotonic() + 5
        retries: list[Delivery] = []
        while not retries and time.monotonic() < deadline:
            sink.wait(0.05)
            sink.poll()
            retries = sink.check_health()
        assert [(d.token, d.status) for d in retries] == [(7, "retry")]
        assert sink.stats.loop_restarts == 1
    finally:
        broker.proc.send_signal(18)  # SIGCONT
    wait_connected(sink, 15)
    sink.stop()


def test_mqtt_311_option(broker):
    sink = make_sink(broker.port, protocol="3.1.1")
    wait_connected(sink)
    sink.publish("lora/gw/x", b"1", token=1)
    assert [d.ok for d in collect(sink, 1)] == [True]
    sink.stop()


def test_reconnect_backoff_is_exponential_with_jitter_and_bounded(caplog):
    port = free_port()  # nothing listens: every attempt is refused at once
    now = [0.0]
    sink = MqttSink(
        MqttSettings(
            broker=parse_broker_url(f"mqtt://127.0.0.1:{port}"),
            client_id="backoff",
            status_topic=STATUS,
            reconnect_min_s=1,
            reconnect_max_s=8,
        ),
        clock=lambda: now[0],
        jitter=lambda: 1.0,  # the upper end of the jitter range: waits are exactly min·2^n
    )
    sink.start()
    attempts = []
    with caplog.at_level("WARNING", logger="gateway.sinks.mqtt"):
        for step in range(400):  # 40 simulated seconds
            now[0] = step / 10
            n = len(caplog.records)
            sink.wait(0.0)
            if len(caplog.records) > n and "cannot connect" in caplog.records[-1].getMessage():
                attempts.append(now[0])
    assert attempts == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0]
    assert not sink.connected
    sink.stop()
    jittered = MqttSink(sink.settings, clock=lambda: 0.0, jitter=lambda: 0.0)
    assert [jittered._schedule_connect() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_puback_reasons_about_the_message_are_poison_acl_stays_refused(broker):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    sink = make_sink(broker.port)
    wait_connected(sink)
    sink.wait(0.05)
    tokens = {}
    for code in (0x90, 0x99, 0x87, 0x97):
        assert sink.publish("lora/gw/x", b"1", token=code)
        tokens[code] = next(reversed(sink._inflight))
    for code, mid in tokens.items():  # as if the broker had answered each with this reason
        sink._on_puback(sink._generation, mid, ReasonCode(PacketTypes.PUBACK, identifier=code))
    got = {d.token: d for d in sink.poll()}
    assert {c: got[c].status for c in tokens} == {
        0x90: "poison",
        0x99: "poison",
        0x87: "refused",
        0x97: "refused",
    }
    assert "topic name invalid" in got[0x90].reason.lower() and not any(d.ok for d in got.values())
    sink.stop()


def test_whatever_else_paho_refuses_is_unpublishable_not_a_crash(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    real = sink._client.publish

    def too_large(topic, payload, **kw):
        if len(payload) > 10:  # paho's own limit is 268,435,455 bytes; the same ValueError, sooner
            raise ValueError("Payload too large.")
        return real(topic, payload, **kw)

    sink._client.publish = too_large
    with pytest.raises(Unpublishable, match="paho refused it: Payload too large"):
        sink.publish("lora/gw/x", b"x" * 11, token="big")
    assert sink.publish("lora/gw/x", b"small", token="ok")
    assert [(d.token, d.status) for d in collect(sink, 1)] == [("ok", "ok")]
    assert sink.stats.loop_restarts == 0 and sink.connected
    sink.stop()
