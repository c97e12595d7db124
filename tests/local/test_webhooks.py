"""Webhooks of the local platform: Replicate's signature scheme, filters, throttling, retries."""
from __future__ import annotations

import time

import httpx
import pytest
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret
from webhook_receiver import WebhookReceiver

from jobrunner.local import webhooks as wh

pytestmark = pytest.mark.slow  # webhook delivery and throttle windows waited out (full suite only)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_replicate_test_vector() -> None:
    # The vector of the official client's own test suite.
    sig = wh.sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_generated_secret_is_accepted_by_official_validator() -> None:
    secret = wh.generate_secret()
    assert secret.startswith("whsec_")
    body = b'{"id":"abc","status":"succeeded"}'
    ts = int(time.time())
    headers = wh.signature_headers(secret, "msg_1", ts, body)
    Webhooks.validate(headers=headers, body=body.decode(), secret=WebhookSigningSecret(key=secret), tolerance=60)
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(headers=headers, body=body.decode() + " ", secret=WebhookSigningSecret(key=secret))
    assert wh.verify(secret, headers, body, tolerance=60)
    assert not wh.verify(secret, headers, body + b" ")
    assert not wh.verify(wh.generate_secret(), headers, body)


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("http://127.0.0.1:9/hook", (), True),
        ("http://127.5.5.5/hook", (), True),
        ("http://[::1]:8080/x", (), True),
        ("http://localhost/x", (), True),
        ("https://example.com/hook", (), False),
        ("http://10.0.0.1/hook", (), False),
        ("https://example.com/hook", ("example.com",), True),
        ("https://example.com/hook", ("*",), True),
        ("ftp://127.0.0.1/hook", (), False),
        ("not a url", (), False),
    ],
)
def test_target_policy(url: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert wh.target_allowed(url, allowed) is ok


def test_filter_defaults_to_output_and_completed() -> None:
    assert wh.normalize_filter(None) == {"output", "completed"}
    assert wh.normalize_filter([]) == {"output", "completed"}
    assert wh.normalize_filter(["start", "bogus"]) == {"start"}


def _sender(**kw) -> wh.WebhookSender:
    s = wh.WebhookSender(SECRET, retry_delays=kw.pop("retry_delays", (0.05, 0.05, 0.05)), **kw)
    s.start()
    return s


def test_signed_delivery_in_order_with_throttled_intermediate_events() -> None:
    with WebhookReceiver() as rx:
        sender = _sender()
        try:
            every = ["start", "output", "logs", "completed"]
            sender.emit(
                "p1", "start", {"id": "p1", "status": "starting"}, webhook=rx.url + "?customId=7", events_filter=every
            )
            for i in range(10):  # a burst within one throttle window
                sender.emit(
                    "p1",
                    "logs",
                    {"id": "p1", "status": "processing", "logs": f"line {i}"},
                    webhook=rx.url + "?customId=7",
                    events_filter=every,
                )
            got = rx.wait_for(lambda r: len(r) >= 3)
            time.sleep(0.2)  # nothing else may arrive inside the window
            sender.emit(
                "p1",
                "completed",
                {"id": "p1", "status": "succeeded", "logs": "line 9"},
                webhook=rx.url + "?customId=7",
                events_filter=every,
            )
            got = rx.wait_for(lambda r: any(x.body["status"] == "succeeded" for x in r))
            assert sender.flush()
        finally:
            sender.close()
    bodies = [r.body for r in got]
    # start, first logs at once, the newest logs when the window closes, then completed.
    assert [b["status"] for b in bodies] == ["starting", "processing", "processing", "succeeded"]
    assert bodies[1]["logs"] == "line 0" and bodies[2]["logs"] == "line 9"
    assert got[2].at - got[1].at >= 0.45
    for r in got:
        assert r.path == "/hook?customId=7"  # query parameters are preserved
        assert r.headers["content-type"] == "application/json"
        Webhooks.validate(headers=r.headers, body=r.raw.decode(), secret=WebhookSigningSecret(key=SECRET), tolerance=60)
    assert len({r.headers["webhook-id"] for r in got}) == 4


def test_throttle_window_holds_at_send_time_behind_a_slow_delivery() -> None:
    every = ["logs", "completed"]
    with WebhookReceiver(delays=[0.9]) as rx:  # the first answer is slow, the rest are quick
        sender = _sender()
        try:
            t0 = time.monotonic()
            for i, at in enumerate((0.0, 0.55, 1.1)):  # each one outside the previous window
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                sender.emit(
                    "p2",
                    "logs",
                    {"id": "p2", "status": "processing", "logs": f"line {i}"},
                    webhook=rx.url,
                    events_filter=every,
                )
            got = rx.wait_for(lambda r: len(r) >= 3)
            assert sender.flush()
        finally:
            sender.close()
    assert [r.body["logs"] for r in got] == ["line 0", "line 1", "line 2"]
    # line 1 waited behind the slow line 0; line 2 must still keep its 500 ms from line 1.
    assert got[2].at - got[1].at >= 0.45


def test_events_filter_is_honoured() -> None:
    with WebhookReceiver() as rx:
        sender = _sender()
        try:
            assert not sender.emit(
                "p2", "start", {"id": "p2", "status": "starting"}, webhook=rx.url, events_filter=["completed"]
            )
            assert not sender.emit(
                "p2", "logs", {"id": "p2", "status": "processing"}, webhook=rx.url, events_filter=["completed"]
            )
            assert not sender.emit("p3", "start", {"id": "p3"}, webhook=rx.url)  # default filter: no start
            assert not sender.emit("p4", "completed", {"id": "p4"}, webhook=None)
            assert sender.emit(
                "p2", "completed", {"id": "p2", "status": "failed"}, webhook=rx.url, events_filter=["completed"]
            )
            rx.wait_for(lambda r: len(r) == 1)
            assert sender.flush()
        finally:
            sender.close()
        assert [r.body["id"] for r in rx.received] == ["p2"]


def test_completed_is_retried_with_the_same_message_id_until_2xx() -> None:
    deliveries: list[wh.Delivery] = []
    with WebhookReceiver(statuses=[500, 503]) as rx:
        sender = _sender(on_delivery=deliveries.append)
        try:
            sender.emit("p5", "completed", {"id": "p5", "status": "succeeded"}, webhook=rx.url)
            got = rx.wait_for(lambda r: len(r) == 3)
            assert sender.flush()
        finally:
            sender.close()
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert [(d.attempt, d.status) for d in deliveries] == [(1, 500), (2, 503), (3, 200)]


def test_intermediate_events_are_not_retried_and_late_events_are_dropped() -> None:
    deliveries: list[wh.Delivery] = []
    with WebhookReceiver(statuses=[500]) as rx:
        sender = _sender(on_delivery=deliveries.append)
        try:
            sender.emit("p6", "output", {"id": "p6", "output": [1]}, webhook=rx.url)
            rx.wait_for(lambda r: len(r) == 1)
            sender.emit("p6", "completed", {"id": "p6", "status": "succeeded"}, webhook=rx.url)
            rx.wait_for(lambda r: len(r) == 2)
            sender.emit("p6", "output", {"id": "p6", "output": [1, 2]}, webhook=rx.url)  # after completed: stale
            assert sender.flush()
            time.sleep(0.1)
        finally:
            sender.close()
    assert [(d.event, d.status) for d in deliveries] == [("output", 500), ("completed", 200)]


def test_disallowed_host_is_never_contacted() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"contacted {request.url}")

    sender = _sender(transport=httpx.MockTransport(boom))
    try:
        assert not sender.emit("p7", "completed", {"id": "p7"}, webhook="https://example.com/hook")
        assert sender.flush()
    finally:
        sender.close()


def test_connection_errors_on_completed_are_retried_then_given_up() -> None:
    deliveries: list[wh.Delivery] = []
    sender = _sender(on_delivery=deliveries.append, retry_delays=(0.01, 0.01))
    try:
        # A loopback port nobody listens on (bind, take its number, close).
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        sender.emit("p8", "completed", {"id": "p8"}, webhook=f"http://127.0.0.1:{port}/hook")
        assert sender.flush(10)
    finally:
        sender.close()
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert all(d.status is None and d.error for d in deliveries)


def test_close_gives_up_retries_in_flight_promptly() -> None:
    with WebhookReceiver(statuses=[500, 500, 500]) as rx:
        sender = _sender(retry_delays=(30.0,))
        sender.emit("p9", "completed", {"id": "p9"}, webhook=rx.url)
        rx.wait_for(lambda r: len(r) == 1)
        thread = sender._thread
        t0 = time.monotonic()
        sender.close(timeout=0.3)
        assert time.monotonic() - t0 < 10.0  # not the 30 s retry delay, even on a busy machine
        assert thread is not None and not thread.is_alive()
    assert len(rx.received) == 1


def test_a_burst_of_jobs_is_delivered_with_bounded_concurrency() -> None:
    with WebhookReceiver(delay=0.05) as rx:
        sender = _sender(max_concurrency=3)
        try:
            for i in range(20):
                sender.emit(f"b{i}", "completed", {"id": f"b{i}"}, webhook=rx.url)
            rx.wait_for(lambda r: len(r) == 20)
        finally:
            sender.close()
    assert {r.body["id"] for r in rx.received} == {f"b{i}" for i in range(20)}
    assert 1 <= rx.max_in_flight <= 3
