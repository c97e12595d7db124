"""Signed webhooks sent by the local platform, with Replicate's delivery rules.

Part of the platform core (it imports no wire): the Replicate wire's service
(`replicate.service.ReplicateService`) owns a `WebhookSender` and emits its job events into it.

Replicate POSTs the GET-shaped prediction/training body to a job's `webhook` URL, signed the
Standard-Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC>`
over `"{id}.{timestamp}.{body}"` with the base64-decoded part of the account's `whsec_...` secret).
The official clients verify exactly that, so this module reproduces it: users can test their
webhook handlers against `jobrunner serve` with the verification code they use in production.

Delivery rules, from Replicate's documentation:
- `webhook_events_filter` picks among `start`, `output`, `logs`, `completed`; without a filter a
  webhook is sent "whenever there are new outputs or the prediction has finished"
  (`output` + `completed`).
- `output` and `logs` are sent at most once per 500 ms per job; the latest body is sent when the
  window closes (trailing edge), so the receiver always ends up with the newest state. `start` and
  `completed` are never throttled.
- only `completed` is retried (on a connection error or any non-2xx), with exponential backoff;
  intermediate events are sent once. Redirects are not followed.

The sender runs its own event loop in a daemon thread, so the platform can call `emit()` from any
thread (the API's event loop, a job-runner thread) without ever waiting on a slow receiver.

Safety: the platform only delivers to hosts its config allows (`allowed_hosts`); by default that
is the loopback interface only, so a test or a manifest can never make this machine call out.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("jobrunner.local.webhooks")

EVENTS = ("start", "output", "logs", "completed")
DEFAULT_EVENTS = frozenset({"output", "completed"})
THROTTLED_EVENTS = frozenset({"output", "logs"})
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
THROTTLE_SECONDS = 0.5
# Replicate: "retried several times on an exponential backoff; the final retry is sent about
# 1 minute after the prediction completed".
DEFAULT_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)

# --- signing (pure) -------------------------------------------------------------------------


def generate_secret() -> str:
    """A new signing secret in Replicate's format: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def _secret_bytes(secret: str) -> bytes:
    prefix, sep, b64 = secret.partition("_")
    if not sep or prefix != "whsec" or not b64:
        raise ValueError("a webhook secret looks like whsec_<base64>")
    return base64.b64decode(b64)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` header value for one message (`v1,<base64 HMAC-SHA256>`)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, *, tolerance: int | None = None) -> bool:
    """True when `headers` carry a valid signature of `body` (for receivers and tests)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = lower["webhook-id"], int(lower["webhook-timestamp"])
        given = lower["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if tolerance is not None and abs(time.time() - ts) > tolerance:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(expected, sig) for sig in given)


# --- policy (pure) --------------------------------------------------------------------------


def normalize_filter(events: Iterable[str] | None) -> frozenset[str]:
    """The events a job asked for; None or empty means Replicate's default (output + completed)."""
    if not events:
        return DEFAULT_EVENTS
    return frozenset(e for e in events if e in EVENTS)


def target_allowed(url: str, allowed_hosts: Iterable[str]) -> bool:
    """May the platform POST to `url`? Loopback always; other hosts only when configured.

    `allowed_hosts` holds host names or IP addresses, or `*` for any host. No DNS lookup is done:
    a name is allowed by name, so a name that happens to resolve to loopback is not a way around it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    allowed = {h.lower() for h in allowed_hosts}
    if "*" in allowed or host in allowed:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- delivery -------------------------------------------------------------------------------


@dataclass
class _JobChannel:
    """Per-job delivery state: keeps events in order and throttles the intermediate ones."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_intermediate: float = 0.0
    last_sent_intermediate: float = 0.0  # when the last throttled event actually went out
    pending: tuple[str, str, bytes] | None = None  # (event, url, body) waiting for the window
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


@dataclass
class Delivery:
    """One attempt, recorded for diagnostics and tests."""

    job_id: str
    event: str
    url: str
    status: int | None
    error: str | None
    attempt: int


class WebhookSender:
    """Delivers signed webhooks in a background thread; `emit()` is thread-safe and never blocks."""

    def __init__(
        self,
        secret: str | Callable[[], str],
        *,
        allowed_hosts: Iterable[str] = (),
        throttle_seconds: float = THROTTLE_SECONDS,
        retry_delays: Iterable[float] = DEFAULT_RETRY_DELAYS,
        timeout: float = 10.0,
        max_concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._secret = secret
        self.allowed_hosts = tuple(allowed_hosts)
        self.throttle_seconds = throttle_seconds
        self.retry_delays = tuple(retry_delays)
        self._timeout = timeout
        # Deliveries in flight at once, over all jobs: a burst of finished jobs must not open
        # hundreds of connections to one receiver at the same moment.
        self._max_concurrency = max(1, max_concurrency)
        self._slots: asyncio.Semaphore | None = None
        self._transport = transport
        self._on_delivery = on_delivery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._channels: dict[str, _JobChannel] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._queued = 0  # emits handed to the loop but not yet taken in (guarded by _start_lock)
        self._started = threading.Event()
        self._start_lock = threading.Lock()

    @property
    def secret(self) -> str:
        return self._secret() if callable(self._secret) else self._secret

    # -- lifecycle --

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="jobrunner-webhooks", daemon=True)
            self._thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        # follow_redirects=False: Replicate does not follow redirects either.
        self._client = httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, transport=self._transport, trust_env=False,
            limits=httpx.Limits(max_connections=self._max_concurrency, max_keepalive_connections=self._max_concurrency),
        )
        self._slots = asyncio.Semaphore(self._max_concurrency)
        self._started.set()
        try:
            loop.run_forever()
        finally:
            # Deliveries still retrying at shutdown are given up (and logged), not left dangling.
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutting down with %d webhook deliveries unfinished", len(pending))
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self._client.aclose())
            loop.close()

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to `timeout` seconds for deliveries in flight, then stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.flush(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is pending or in flight (tests, shutdown). True when drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle():
                return True
            time.sleep(0.02)
        return self._idle()

    def _idle(self) -> bool:
        with self._start_lock:
            if self._queued:
                return False
        return not self._tasks and all(c.pending is None for c in list(self._channels.values()))

    # -- the API the platform calls --

    def emit(
        self,
        job_id: str,
        event: str,
        body: Mapping[str, Any],
        *,
        webhook: str | None,
        events_filter: Iterable[str] | None = None,
    ) -> bool:
        """Queue `event` for job `job_id` if the job has a webhook that wants it.

        `body` is the job's GET-shaped JSON object at this moment. Returns True when something
        was queued. Safe to call from any thread.
        """
        if not webhook or event not in EVENTS:
            return False
        wanted = normalize_filter(events_filter)
        if event not in wanted:
            return False
        if event == "output" and "completed" in wanted and body.get("status") in FINAL_STATUSES:
            # Output that appears as the job finishes: the `completed` webhook carries the same
            # body, so one delivery says it all.
            return False
        if not target_allowed(webhook, self.allowed_hosts):
            log.warning("webhook for %s not sent: host of %s is not allowed by the platform config",
                        job_id, _safe_url(webhook))
            return False
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.start()
        assert self._loop is not None
        with self._start_lock:
            self._queued += 1
        self._loop.call_soon_threadsafe(self._enqueue, job_id, event, webhook, raw)
        return True

    # -- inside the sender's loop --

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, job_id: str, event: str, url: str, raw: bytes) -> None:
        try:
            self._enqueue_now(job_id, event, url, raw)
        finally:  # only after the task or the pending slot exists, so flush() cannot miss it
            with self._start_lock:
                self._queued -= 1

    def _enqueue_now(self, job_id: str, event: str, url: str, raw: bytes) -> None:
        chan = self._channels.setdefault(job_id, _JobChannel())
        if chan.closed:
            return  # a completed webhook went out: later events for the job are stale
        now = time.monotonic()
        if event in THROTTLED_EVENTS:
            wait = chan.last_intermediate + self.throttle_seconds - now
            if wait > 0:
                chan.pending = (event, url, raw)  # keep only the newest body for the window
                if chan.timer is None:
                    chan.timer = asyncio.get_running_loop().call_later(wait, self._release, job_id)
                return
            chan.last_intermediate = now
            self._spawn(self._deliver(job_id, chan, event, url, raw, retry=False))
            return
        if event == "completed":
            # The final body supersedes any throttled intermediate one.
            chan.closed = True
            chan.pending = None
            if chan.timer is not None:
                chan.timer.cancel()
                chan.timer = None
        self._spawn(self._deliver(job_id, chan, event, url, raw, retry=event == "completed"))

    def _release(self, job_id: str) -> None:
        chan = self._channels.get(job_id)
        if chan is None:
            return
        chan.timer = None
        if chan.pending is None:
            return
        event, url, raw = chan.pending
        chan.pending = None
        chan.last_intermediate = time.monotonic()
        self._spawn(self._deliver(job_id, chan, event, url, raw, retry=False))

    async def _deliver(self, job_id: str, chan: _JobChannel, event: str, url: str, raw: bytes, *, retry: bool) -> None:
        assert self._client is not None
        msg_id = "msg_" + secrets.token_urlsafe(18)  # the same id on every retry of this message
        delays = list(self.retry_delays) if retry else []
        attempt = 0
        async with chan.lock:  # one job's webhooks go out in the order they were emitted
            if event in THROTTLED_EVENTS:
                # The window is also kept at send time: a slow delivery ahead in this job's queue
                # must not let the intermediate ones behind it go out back to back.
                gap = chan.last_sent_intermediate + self.throttle_seconds - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
                chan.last_sent_intermediate = time.monotonic()
            while True:
                attempt += 1
                status: int | None = None
                error: str | None = None
                try:
                    assert self._slots is not None
                    async with self._slots:
                        ts = int(time.time())  # signed when sent, not when queued
                        headers = signature_headers(self.secret, msg_id, ts, raw)
                        resp = await self._client.post(url, content=raw, headers=headers)
                    status = resp.status_code
                    ok = 200 <= status < 300
                    if not ok:
                        error = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    ok = False
                    error = type(exc).__name__
                self._record(Delivery(job_id, event, _safe_url(url), status, error, attempt))
                if ok or not delays:
                    if not ok:
                        log.warning("webhook %s for %s to %s failed: %s", event, job_id, _safe_url(url), error)
                    break
                await asyncio.sleep(delays.pop(0))
        self._prune()

    def _prune(self, keep: int = 10_000) -> None:
        # Closed channels stay a while so late events of a finished job are still dropped.
        if len(self._channels) <= keep:
            return
        idle = [j for j, c in self._channels.items() if c.closed and not c.lock.locked()]
        for jid in idle[: len(self._channels) - keep]:
            del self._channels[jid]

    def _record(self, d: Delivery) -> None:
        if self._on_delivery is not None:
            try:
                self._on_delivery(d)
            except Exception:  # a diagnostics hook must never break delivery
                log.exception("webhook delivery hook failed")


def _safe_url(url: str) -> str:
    """The URL without its query string or credentials, for logs (serve.log), and without path
    segments shaped like tokens: many hook URLs carry their secret in the path (Slack, Discord)."""
    from jobrunner.redact import REDACTED, url_secrets

    try:
        p = urlsplit(url)
        host = p.hostname or ""
        port = f":{p.port}" if p.port else ""
        hidden = set(url_secrets(url))
        path = "/".join(REDACTED if seg in hidden else seg for seg in p.path.split("/"))
        return f"{p.scheme}://{host}{port}{path}"
    except ValueError:
        return "(invalid url)"


# --- configuration ----------------------------------------------------------------------------

ALLOWED_HOSTS_ENV = "JOBRUNNER_LOCAL_WEBHOOK_HOSTS"


def allowed_hosts_from(configured: Iterable[str]) -> tuple[str, ...]:
    """Hosts besides loopback that webhooks may go to: the platform's `webhook_hosts` option and
    the comma-separated `JOBRUNNER_LOCAL_WEBHOOK_HOSTS` (`*` = any host)."""
    hosts = list(configured)
    hosts += [h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    return tuple(hosts)
