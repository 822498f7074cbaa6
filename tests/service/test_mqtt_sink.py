from __future__ import annotations

import time

from gateway.sinks.mqtt import Delivery, MqttSettings, MqttSink
from gateway.sinks.url import parse_broker_url

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
    deadline = time.monotonic() + timeout_s
    while not sink.connected:
        assert time.monotonic() < deadline, "sink did not connect"
        sink.poll()
        time.sleep(0.01)


def collect(sink: MqttSink, n: int, timeout_s: float = 10.0) -> list[Delivery]:
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += sink.poll()
        out += sink.check_health()
        time.sleep(0.005)
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
        sink.poll()
        time.sleep(0.01)
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


def test_dead_network_loop_is_noticed_restarted_and_counted(broker):
    sink = make_sink(broker.port)
    wait_connected(sink)
    sink._client.disconnect()  # loop_forever returns: the network thread is gone, as after a callback crash
    sink._thread.join(5)
    assert not sink._thread.is_alive()
    sink.check_health()
    assert sink.stats.loop_restarts == 1
    wait_connected(sink)
    assert sink.publish("lora/gw/x", b"1", token=1)
    assert [d.token for d in collect(sink, 1) if d.ok] == [1]
    sink.stop()


def test_stalled_loop_returns_inflight_for_retry(broker):
    sink = make_sink(broker.port, ack_timeout_s=1.0)
    wait_connected(sink)
    broker.proc.send_signal(19)  # SIGSTOP: the TCP connection stays up, PUBACKs stop coming
    try:
        assert sink.publish("lora/gw/x", b"1", token=7)
        deadline = time.monotonic() + 5
        retries: list[Delivery] = []
        while not retries and time.monotonic() < deadline:
            sink.poll()
            retries = sink.check_health()
            time.sleep(0.05)
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
