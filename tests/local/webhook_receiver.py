"""A real HTTP receiver on loopback that records the webhooks it gets (test helper)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # bursts of deliveries must not overflow the listen backlog
    daemon_threads = True


class WebhookReceiver:
    """Records every POST; answers with the statuses in `statuses` first, then 200."""

    def __init__(
        self, statuses: list[int] | None = None, delay: float = 0.0, delays: list[float] | None = None
    ) -> None:
        self.received: list[Received] = []
        self.statuses = list(statuses or [])
        self.delays = list(delays or [])  # per-request answer delays, in order; then `delay`
        self.in_flight = 0
        self.max_in_flight = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._cond:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    wait = receiver.delays.pop(0) if receiver.delays else delay
                if wait:
                    time.sleep(wait)
                with receiver._cond:
                    receiver.in_flight -= 1
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, raw, time.monotonic())
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhooks not received in {timeout}s; got {[r.body for r in self.received]}")
                self._cond.wait(left)
            return list(self.received)
