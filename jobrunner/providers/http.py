"""The HTTP edge of every provider: one request helper, retries, and THE error translation.

Every provider request goes through `HttpClient.request`, which:

* reuses one `httpx.AsyncClient` (connection pooling, keep-alive) with explicit timeouts, over
  jobrunner's lean HTTP/1.1 transport (`wire.py`: httpcore's pool and h11 were most of a
  request's client CPU), with httpx's own transport on plain asyncio sockets (`netbackend.py`)
  under it for uploads and anything unusual, or for everything with `JOBRUNNER_HTTP_TRANSPORT=httpx`.
  JSON creates and GETs on the lean transport skip httpx's Request and Response objects
  (`jsonwire.py`: the same bytes on the wire, the same answers and errors);
* bounds every request in total time, not only per read: one attempt (connect, send, the whole
  answer) gets `timeout` seconds, all attempts and backoffs together get `deadline` seconds, and a
  command-wide deadline (`command_deadline`, e.g. `apply --timeout` or the refresh bound of
  `plan`/`status`) cuts whatever is in flight when it passes. A server that sends headers and then
  trickles its body one byte a second is given up on like one that never answers;
* reads answers streaming with a byte cap (`max_body_bytes`), keeping only the tail of job logs
  (`bodies.LogTrimmer`), so no answer is ever held whole before its size is known;
* takes a token from the provider's rate limiter (`ratelimit.py`) for the request's class;
* retries with jittered exponential backoff on 429, 5xx and connection errors, honouring
  `Retry-After` (seconds or an HTTP date, or Replicate's `retry_after` body field);
* NEVER blindly re-sends a non-idempotent request (a create): only a 429 (the server refused it
  before doing anything) or a connection error that provably happened before the request left
  (connect error/timeout, pool timeout) is retried. A timeout or dropped connection after the
  request was sent, or a 5xx answer to it, raises an error with `ambiguous=True`: the job may
  exist, and the reconciler must look it up before creating again;
* translates every failure into a `jobrunner.errors.ProviderError` subclass keeping the provider's
  own `detail` (Replicate problem+json `detail`/`invalid_fields`, Emissary `{status, error, code}`)
  in `translate_response`, the one place where HTTP statuses become jobrunner errors.

The credential travels in a header set by an `httpx.Auth` object whose repr hides it; messages and
details are scrubbed of it in case a server echoes it back. Time and randomness are injectable so
tests exercise the retry schedule without waiting.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json as jsonlib
import logging
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx

from jobrunner import __version__
from jobrunner.errors import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    ProtocolError,
    ProviderError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from jobrunner.providers.bodies import BodyTooLarge, KiB, LogTrimmer, MiB, read_capped
from jobrunner.providers.jsonwire import JsonAnswer, JsonWire, Prepared
from jobrunner.providers.netbackend import AsyncioBackend
from jobrunner.providers.ratelimit import OTHER, RateLimiter
from jobrunner.providers.wire import LeanTransport, use_lean_transport
from jobrunner.redact import MIN_SECRET_LEN, register_secret

log = logging.getLogger("jobrunner.providers")

_E = TypeVar("_E", bound=ProviderError)  # `_scrub_error` hands back the subclass it was given

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Raised before any byte of the request left this machine: safe to retry even for a create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=60.0)
# One request, all attempts and the backoffs between them (providers.<name>.deadline).
DEFAULT_DEADLINE = 120.0
# The largest answer read (providers.<name>.max_body_bytes); job logs are trimmed, not counted whole.
DEFAULT_MAX_BODY_BYTES = 32 * MiB
# What `jobrunner logs` keeps of one job's log (providers.<name>.max_log_bytes): the end of it.
DEFAULT_MAX_LOG_BYTES = 1 * MiB
# What any other answer keeps of a `logs` field (a status poll or list page has no use for logs).
FIELD_LOG_BYTES = 16 * KiB
_PARSED_URLS = 64  # URLs kept parsed per client (see HttpClient._parsed)
DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)

Sleep = Callable[[float], Awaitable[None]]
Now = Callable[[], datetime]
# Resolves (base_url, token) lazily on first use, e.g. starting the local platform.
EndpointResolver = Callable[[], tuple[str, str | None]]


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one (loading the CA bundle) costs ~0.1 s."""
    return httpx.create_ssl_context()


def _httpx_transport() -> httpx.AsyncHTTPTransport:
    """httpx's own transport (pool, h11, TLS context, limits), its sockets on plain asyncio.

    `netbackend` says why: anyio's socket layer cost more client CPU per request than the rest of
    httpcore. The pool is built as httpx builds it, with the backend added.
    """
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), limits=DEFAULT_LIMITS)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(),
        max_connections=DEFAULT_LIMITS.max_connections,
        max_keepalive_connections=DEFAULT_LIMITS.max_keepalive_connections,
        keepalive_expiry=DEFAULT_LIMITS.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport


def _default_transport() -> httpx.AsyncBaseTransport:
    """The lean HTTP/1.1 transport (`wire.py`: a tenth of httpcore's client CPU per request), with
    httpx's own transport under it for what it does not handle; httpx's alone when
    `JOBRUNNER_HTTP_TRANSPORT=httpx`. An explicit `transport` (tests) is used as given, and a
    proxy from the environment goes through the transport httpx mounts for it.
    """
    if not use_lean_transport():
        return _httpx_transport()
    return LeanTransport(fallback=_httpx_transport(), ssl_context=_ssl_context(), limits=DEFAULT_LIMITS)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- the command's deadline -----------------------------------------------------------------

@dataclass(frozen=True)
class CommandDeadline:
    """When the running command stops waiting for providers (`time.monotonic()`), and why."""

    at: float
    why: str  # e.g. "apply --timeout 20s", for the message of a request it cuts


_COMMAND_DEADLINE: contextvars.ContextVar[CommandDeadline | None] = contextvars.ContextVar(
    "jobrunner_command_deadline", default=None)


@contextlib.contextmanager
def command_deadline(at: float | None, why: str) -> Iterator[None]:
    """Every provider request made inside (tasks started inside included) ends by `at`.

    A request still in flight then is cut and fails with a TransportError naming the provider,
    the request and `why`; one that would start after it fails at once without sending anything.
    Nested deadlines: the earlier one wins.
    """
    current = _COMMAND_DEADLINE.get()
    if at is None or (current is not None and current.at <= at):
        yield
        return
    token = _COMMAND_DEADLINE.set(CommandDeadline(at, why))
    try:
        yield
    finally:
        _COMMAND_DEADLINE.reset(token)


def current_deadline() -> CommandDeadline | None:
    return _COMMAND_DEADLINE.get()


def upload_seconds(size: int) -> float:
    """The time one upload attempt of `size` bytes may take: 5 minutes, plus 1 s per MiB beyond 300 MiB."""
    return max(300.0, size / MiB)


class _AttemptTimedOut(Exception):
    """One attempt ran out of time; `phase` and `received` say how far it got."""

    def __init__(self, phase: str, received: int, limit: float) -> None:
        super().__init__(phase)
        self.phase = phase
        self.received = received
        self.limit = limit

    def describe(self) -> str:
        if self.phase == "body":
            return (f"the answer did not arrive in full within {self.limit:.3g}s "
                    f"(headers came, then {self.received:,} bytes of the body)")
        return f"no answer within {self.limit:.3g}s"


@dataclass
class RetryPolicy:
    """How hard to try: attempts in all, the backoff curve, and the longest Retry-After obeyed.

    Backoff before retry n (1-based) is `min(backoff_max, backoff_base * 2**(n-1))`, jittered
    down to between half and all of it ("equal jitter") so that many clients hitting the same
    error do not come back in lockstep. A Retry-After is waited in full plus up to 10% jitter;
    one longer than `max_retry_after` is not waited out here: the error is raised with
    `retry_after` set, for the caller to schedule.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after + self.rng.uniform(0.0, 0.1 * retry_after)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (retry - 1)))
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> RetryPolicy:
        raw = dict(raw or {})
        policy = cls()
        for key in ("max_attempts", "backoff_base", "backoff_max", "max_retry_after"):
            if key in raw:
                value = raw[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    from jobrunner.errors import ConfigError

                    raise ConfigError(f"jobrunner.yaml: retries.{key} must be a non-negative number, got {value!r}")
                setattr(policy, key, int(value) if key == "max_attempts" else float(value))
        policy.max_attempts = max(1, policy.max_attempts)
        return policy


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        try:  # some servers send ISO 8601; the official Python client accepts it too
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


# --- error translation: the one place -----------------------------------------------------

_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
DETAIL_LIMIT = 500


def _excerpt(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of a non-JSON body (HTML error pages included)."""
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_detail(body: Any) -> str | None:
    """The provider's own explanation from a JSON error body.

    Replicate (problem+json): `detail`, with `title` when it adds something, plus each
    `invalid_fields[].description`. Emissary: `error` plus `code`.
    """
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    title, detail = body.get("title"), body.get("detail")
    if isinstance(detail, str) and detail.strip():
        detail = detail.strip()
        if isinstance(title, str) and title and title.lower() not in detail.lower():
            parts.append(f"{title}: {detail}")
        else:
            parts.append(detail)
    elif isinstance(detail, (list, dict)):  # FastAPI-style validation detail
        parts.append(jsonlib.dumps(detail, sort_keys=True))
    elif isinstance(title, str) and title:
        parts.append(title)
    fields = body.get("invalid_fields")
    if isinstance(fields, list):
        for item in fields:
            if isinstance(item, dict):
                desc = item.get("description") or item.get("type")
                where = item.get("field")
                line = f"{where}: {desc}" if where else str(desc)
                if desc and line not in " ".join(parts):
                    parts.append(line)
    error = body.get("error")
    if isinstance(error, str) and error:
        code = body.get("code")
        parts.append(f"{error} ({code})" if isinstance(code, str) and code else error)
    elif isinstance(error, dict) and isinstance(error.get("message"), str):
        parts.append(error["message"])
    if not parts and isinstance(body.get("message"), str):
        parts.append(body["message"])
    from jobrunner.redact import scrub_text

    # Scrubbed before it is cut: a secret the detail quotes must not survive as a prefix.
    text = scrub_text("; ".join(p for p in parts if p))
    return text[:DETAIL_LIMIT] or None


def _body_detail(response: httpx.Response) -> tuple[Any, str | None]:
    """(parsed JSON body or None, detail text) of an error answer, whatever its shape."""
    raw = response.content
    if not raw.strip():
        return None, None
    try:
        body = jsonlib.loads(raw)
    except ValueError:
        return None, _excerpt(response.text) or None
    return body, error_detail(body) or _excerpt(response.text)


def translate_response(
    response: httpx.Response,
    *,
    provider: str,
    what: str,
    credential_var: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map a non-2xx answer to the jobrunner error of its class, keeping the provider's detail."""
    status = response.status_code
    _, detail = _body_detail(response)
    reason = response.reason_phrase or ""
    message = f"{provider}: {what} failed: HTTP {status}{' ' + reason if reason else ''}"
    if detail:
        message += f": {detail}"
    kwargs: dict[str, Any] = dict(provider=provider, status=status, detail=detail, retry_after=retry_after)
    if status in (401, 403):
        var = f" {credential_var}" if credential_var else " the credential"
        return AuthError(message, hint=f"check{var}: the provider did not accept it (or it lacks access)", **kwargs)
    if status == 402:
        return PaymentRequiredError(
            message, hint="the provider account cannot pay for this: add credit or a payment method", **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status == 429:
        when = f" (it asked to wait {retry_after:g}s)" if retry_after is not None else ""
        return RateLimitedError(
            message,
            hint=f"the provider is throttling requests{when}; "
                 f"try again later or lower providers.{provider}.rate_limits in jobrunner.yaml",
            **kwargs,
        )
    if status >= 500:
        return ServerError(message, hint="the provider had a server error; try again later", **kwargs)
    if 300 <= status < 400:
        location = response.headers.get("location")
        return ProtocolError(
            message + (f" (redirect to {location})" if location else ""),
            hint="redirects are not followed; check the provider's base URL",
            **kwargs,
        )
    return InvalidRequestError(
        message, hint="the provider rejected the request; fix what its detail names and run again", **kwargs)


# --- the client ---------------------------------------------------------------------------

class _HeaderAuth(httpx.Auth):
    """Puts the credential into one header; its repr never shows it."""

    def __init__(self, header: str, scheme: str | None, token: str | None) -> None:
        self.header = header
        self.scheme = scheme
        self.token = token

    def __repr__(self) -> str:
        return f"<{self.header} credential>"

    def header_value(self) -> tuple[str, str] | None:
        """(header, value) that carries the credential, or None without one."""
        if not self.token:
            return None
        return self.header, f"{self.scheme} {self.token}" if self.scheme else self.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        found = self.header_value()
        if found is not None:
            request.headers[found[0]] = found[1]
        yield request


class _SetCookiesOnly(httpx.Cookies):
    """The client's cookie jar, which looks at an answer only when it sets a cookie.

    httpx hands every answer to the jar, and the jar first rebuilds the request as a urllib one
    (its URL parsed again): a measurable share of a create's client CPU, for provider APIs that
    set no cookies. An answer with a `Set-Cookie` header is still handled exactly as before.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if any(key.lower() == b"set-cookie" for key, _ in response.headers.raw):
            super().extract_cookies(response)


class HttpClient:
    """A provider's connection: base URL, credential, rate limiter, retry policy, statistics."""

    def __init__(
        self,
        provider: str,
        base_url: str | None,
        *,
        token: str | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str | None = "Bearer",
        credential_var: str | None = None,
        resolve_endpoint: EndpointResolver | None = None,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        unreachable_after: float | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Now = utcnow,
    ) -> None:
        if base_url is None and resolve_endpoint is None:
            raise ValueError("HttpClient needs a base_url or a resolve_endpoint")
        self.provider = provider
        self.base_url = base_url.rstrip("/") if base_url else None
        self.credential_var = credential_var
        self._auth = _HeaderAuth(auth_header, auth_scheme, token)
        register_secret(token)  # so every other output's scrubbing knows it too
        self._resolve_endpoint = resolve_endpoint
        self._resolve_lock: asyncio.Lock | None = None
        self.limiter = limiter or RateLimiter()
        self.policy = policy or RetryPolicy()
        self._transport = transport
        self._timeout = timeout or DEFAULT_TIMEOUT
        self.deadline = deadline
        self.max_body_bytes = max_body_bytes
        self.max_log_bytes = max_log_bytes
        # How long polling tolerates this provider failing before apply stops waiting on it
        # (read by `reconcile.waiter`; None: its default).
        self.unreachable_after = unreachable_after
        self._sleep = sleep
        self._now = now
        self._client: httpx.AsyncClient | None = None
        self._jsonwire: JsonWire | None = None  # JSON requests without httpx's objects (lean transport only)
        self._urls: dict[str, httpx.URL] = {}  # see `_parsed`
        self._loop: asyncio.AbstractEventLoop | None = None
        # Counters: requests (sent, retries included), requests.<class>, retries, throttled (429s), errors.
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"HttpClient(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def timeout(self) -> httpx.Timeout:
        """The default timeouts of this provider's requests."""
        return self._timeout

    # -- plumbing ---------------------------------------------------------------------------

    async def _ensure(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is not loop:
            # Used from a new event loop (a second asyncio.run): the old pool's connections and
            # locks belong to the dead loop, so start afresh instead of failing.
            self._client = None
            self._resolve_lock = None
            self.limiter.reset_locks()
        if self._client is not None:
            return self._client
        self._loop = loop
        if self.base_url is None:
            assert self._resolve_endpoint is not None
            if self._resolve_lock is None:
                self._resolve_lock = asyncio.Lock()
            async with self._resolve_lock:
                if self.base_url is None:
                    # Resolving may start a process and wait for it: keep the loop responsive.
                    url, token = await asyncio.to_thread(self._resolve_endpoint)
                    self.base_url = url.rstrip("/")
                    if token:
                        self._auth.token = token
                        register_secret(token)
        if self._client is None:
            self._client = httpx.AsyncClient(
                auth=self._auth,
                timeout=self._timeout,
                limits=DEFAULT_LIMITS,
                transport=self._transport or _default_transport(),
                headers={"User-Agent": f"jobrunner/{__version__}", "Accept": "application/json"},
                follow_redirects=False,
                verify=_ssl_context(),
            )
            if isinstance(getattr(self._client, "_cookies", None), httpx.Cookies):
                self._client._cookies = _SetCookiesOnly(self._client._cookies.jar)
            lean = getattr(self._client, "_transport", None)
            self._jsonwire = JsonWire(self._client, lean) if isinstance(lean, LeanTransport) else None
        return self._client

    def url(self, path_or_url: str) -> str:
        """Absolute URL for a path, or a server-given URL (pagination `next`) re-rooted on our base.

        A `next` link naming another origin is re-rooted on the configured base URL, so the
        credential is only ever sent where the user pointed jobrunner.
        """
        assert self.base_url is not None
        if path_or_url.startswith(("http://", "https://")):
            given, base = urlsplit(path_or_url), urlsplit(self.base_url)
            if (given.scheme, given.netloc) == (base.scheme, base.netloc):
                return path_or_url
            prefix = base.path.rstrip("/")
            path = given.path if not prefix or given.path.startswith(prefix + "/") else prefix + given.path
            return f"{base.scheme}://{base.netloc}{path}" + (f"?{given.query}" if given.query else "")
        return self.base_url + (path_or_url if path_or_url.startswith("/") else "/" + path_or_url)

    def scrub(self, text: str | None) -> str | None:
        """Remove the credential from text a server (or an exception) produced."""
        token = self._auth.token
        # As in redact.scrub_text: a very short (test) credential is not searched for, or every
        # occurrence of its letters would be blanked out of the message.
        if text and token and len(token) >= MIN_SECRET_LEN and token in text:
            return text.replace(token, "(sensitive)")
        return text

    def _scrub_error(self, err: _E) -> _E:
        err.message = self.scrub(err.message) or ""
        err.args = (err.message,)
        err.detail = self.scrub(err.detail)
        return err

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._jsonwire = None

    # -- the request helper -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        request_class: str = OTHER,
        what: str | None = None,
        timeout: httpx.Timeout | None = None,
        log_bytes: int = FIELD_LOG_BYTES,
        attempt_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one logical request (with retries); return the 2xx answer or raise a ProviderError.

        `idempotent` defaults from the method (POST and PATCH are not). Pass `idempotent=True`
        for POSTs that are safe to repeat (cancel, upload) and leave creates non-idempotent.
        `log_bytes` is what is kept of each `logs` field of a JSON answer (its end).
        `attempt_timeout` replaces the total time one attempt may take (an upload's grows with
        its size, see `upload_seconds`); the request's deadline is never shorter than one attempt.
        """
        answer = await self._send(
            method, path, json=json, params=params, files=files, data=data, headers=headers, idempotent=idempotent,
            request_class=request_class, what=what, timeout=timeout, log_bytes=log_bytes,
            attempt_timeout=attempt_timeout)
        return answer if isinstance(answer, httpx.Response) else answer.to_httpx()

    async def _send(self, method: str, path: str, *, idempotent: bool | None, request_class: str = OTHER,
                    what: str | None = None, timeout: httpx.Timeout | None = None, log_bytes: int = FIELD_LOG_BYTES,
                    attempt_timeout: float | None = None, **kwargs: Any) -> httpx.Response | JsonAnswer:
        """`request`'s retry loop; the 2xx answer as read (a `JsonAnswer` when it went by `jsonwire`)."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        client = await self._ensure()
        url = self.url(path)
        shown = what or f"{method} {urlsplit(url).path}"
        # One attempt gets the read timeout in total (a held create's is longer than the hold).
        per_attempt = attempt_timeout or float(
            (timeout or self._timeout).read or self._timeout.read or DEFAULT_TIMEOUT.read or 30.0)
        end, bound = self._end_of(time.monotonic(), per_attempt)
        attempt = 0
        last: str | None = None  # why the previous attempt failed, for the out-of-time message
        while True:
            attempt += 1
            await self._take_turn(request_class, end, shown, bound, attempt, last)
            limit = min(per_attempt, end - time.monotonic())
            try:
                response = await self._attempt(
                    client, method, url, limit=limit, log_bytes=log_bytes, timeout=timeout, **kwargs)
            except _AttemptTimedOut as cut:
                last = cut.describe()
                if time.monotonic() >= end - 0.001:
                    raise self._out_of_time(shown, bound, attempt, sent=not idempotent, last=last) from None
                if idempotent and attempt < self.policy.max_attempts and await self._backoff(
                        attempt, None, shown, "timeout", end):
                    continue
                self.stats["errors"] += 1
                raise self._transport_error(shown, last, sent=True, idempotent=idempotent) from None
            except httpx.TransportError as exc:
                last = _describe(exc)
                if await self._retry_transport(exc, idempotent, attempt, shown, end):
                    continue
                self.stats["errors"] += 1
                raise self._transport_error(shown, last, sent=not isinstance(exc, _NOT_SENT),
                                            idempotent=idempotent) from None
            retry_after = self._retry_after(response)
            self.limiter.observe(request_class, response.status_code, response.headers, retry_after)
            if 200 <= response.status_code < 300:
                return response
            assert isinstance(response, httpx.Response)  # `_attempt` hands back others as httpx's
            if await self._retry_status(response, retry_after, idempotent, attempt, shown, end):
                last = f"HTTP {response.status_code}"
                continue
            raise self._failed(response, retry_after, shown, idempotent)

    async def _retry_transport(self, exc: httpx.TransportError, idempotent: bool, attempt: int, shown: str,
                               end: float) -> bool:
        """Try again after a connection error? Only when it is safe (idempotent, or provably not
        sent) and can help, after the backoff (False when that would pass the deadline)."""
        sent = not isinstance(exc, _NOT_SENT)
        hopeless = isinstance(exc, httpx.UnsupportedProtocol)  # a bad base URL: retrying cannot help
        return ((idempotent or not sent) and not hopeless and attempt < self.policy.max_attempts
                and await self._backoff(attempt, None, shown, type(exc).__name__, end))

    async def _retry_status(self, response: httpx.Response, retry_after: float | None, idempotent: bool,
                            attempt: int, shown: str, end: float) -> bool:
        """Try again after a non-2xx answer? A 429 always (the server did nothing), a 5xx only when
        idempotent, never past a Retry-After longer than the policy obeys or the deadline."""
        status = response.status_code
        if status == 429:
            self.stats["throttled"] += 1
        retryable = status == 429 or (status >= 500 and idempotent)
        too_long = retry_after is not None and retry_after > self.policy.max_retry_after
        return (retryable and not too_long and attempt < self.policy.max_attempts
                and await self._backoff(attempt, retry_after, shown, str(status), end))

    def _failed(self, response: httpx.Response, retry_after: float | None, shown: str,
                idempotent: bool) -> ProviderError:
        """The error a non-2xx answer ends the request with, counted."""
        error = self._scrub_error(
            translate_response(
                response, provider=self.provider, what=shown, credential_var=self.credential_var,
                retry_after=retry_after,
            )
        )
        if response.status_code >= 500 and not idempotent:
            # The server may have created the job before failing: never re-send blindly.
            error.ambiguous = True
            error.hint = ("the provider may have created it anyway: "
                          "jobrunner looks the job up before creating it again")
        self.stats["errors"] += 1
        return error

    async def _take_turn(self, request_class: str, end: float, shown: str, bound: CommandDeadline | None,
                         attempt: int, last: str | None) -> None:
        """Wait for the rate limiter's token for this attempt, never past the request's deadline,
        and count the request. `last` is why the previous attempt failed, for the message."""
        if time.monotonic() >= end:  # nothing is sent once the deadline has passed
            # (A backoff that ended late on a busy machine lands here: still name the cause.)
            raise self._out_of_time(shown, bound, attempt - 1, sent=False, last=last)
        if not self.limiter.try_take(request_class):  # a token at once needs no deadline timer
            try:
                async with asyncio.timeout(max(0.0, end - time.monotonic())):
                    await self.limiter.acquire(request_class)
            except TimeoutError:
                raise self._out_of_time(shown, bound, attempt - 1, sent=False, last=last) from None
        self.stats["requests"] += 1
        self.stats[f"requests.{request_class}"] += 1

    def _end_of(self, started: float, per_attempt: float) -> tuple[float, CommandDeadline | None]:
        """When this request must be over: its own deadline, or the command's if that is sooner."""
        end = started + max(self.deadline, per_attempt)
        command = current_deadline()
        if command is not None and command.at < end:
            return command.at, command
        return end, None

    async def _attempt(self, client: httpx.AsyncClient, method: str, url: str, *, limit: float, log_bytes: int,
                       timeout: httpx.Timeout | None, **kwargs: Any) -> httpx.Response | JsonAnswer:
        """One exchange, bounded in total by `limit` seconds; the body read streaming, capped.
        A 2xx answer that went by `jsonwire` is a `JsonAnswer`; every other answer is httpx's."""
        if self._jsonwire is not None and kwargs.get("files") is None and kwargs.get("data") is None:
            prepared = self._jsonwire.prepare(
                method, url, self._parsed(url), json_body=kwargs.get("json"), params=kwargs.get("params"),
                headers=kwargs.get("headers"), auth=self._auth.header_value(), timeout=timeout or self._timeout)
            if prepared is not None:
                return await self._attempt_lean(self._jsonwire, prepared, url, limit=limit, log_bytes=log_bytes)
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        phase, received = "answer", [0]
        try:
            async with asyncio.timeout(max(0.0, limit)):
                request = client.build_request(method, self._parsed(url), **kwargs, **extra)
                response = await client.send(request, stream=True)
                phase = "body"
                try:
                    json_body = "json" in response.headers.get("content-type", "").lower()
                    body = await read_capped(
                        response.aiter_bytes(), max_bytes=self.max_body_bytes,
                        trimmer=LogTrimmer(log_bytes) if json_body else None, progress=received,
                    )
                finally:
                    await response.aclose()
        except TimeoutError:
            raise _AttemptTimedOut(phase, received[0], limit) from None
        except BodyTooLarge as big:
            raise self._too_large(response.status_code, method, url, big) from None
        # The body was read here, under the cap; hand it to the response as if httpx had read it.
        response._content = body
        return response

    async def _attempt_lean(self, jsonwire: JsonWire, prepared: Prepared, url: str, *, limit: float,
                            log_bytes: int) -> httpx.Response | JsonAnswer:
        """`_attempt` without httpx's objects: the same bounds, cap, log trimming and decoding."""
        phase, received = "answer", [0]
        answer: JsonAnswer | None = None
        try:
            async with asyncio.timeout(max(0.0, limit)):
                head, answer = await jsonwire.open(prepared)
                phase = "body"
                # A content-encoded body (gzip, ...) is decoded by httpx's decoders, as before.
                decoding = answer.to_httpx(head.body) if answer.encoded else None
                json_body = "json" in answer.headers.get("content-type", "").lower()
                # A body shorter than the log cap and the size cap is what read_capped would return.
                whole = None if decoding is not None else head.body.take_whole(
                    min(log_bytes, self.max_body_bytes) if json_body else self.max_body_bytes)
                try:
                    answer.content = whole if whole is not None else await read_capped(
                        decoding.aiter_bytes() if decoding is not None else aiter(head.body),
                        max_bytes=self.max_body_bytes, trimmer=LogTrimmer(log_bytes) if json_body else None,
                        progress=received,
                    )
                finally:
                    await head.body.aclose()
        except TimeoutError:
            raise _AttemptTimedOut(phase, received[0], limit) from None
        except BodyTooLarge as big:
            assert answer is not None
            raise self._too_large(answer.status_code, prepared.method, url, big) from None
        answer.log()
        if "set-cookie" in answer.headers:
            jsonwire.client.cookies.extract_cookies(answer.to_httpx())
        return answer if 200 <= answer.status_code < 300 else answer.to_httpx()

    def _parsed(self, url: str) -> httpx.URL:
        """`url` parsed once: every create of a batch goes to the same URL, and httpx parses a
        string URL (and validates it) on each request. Bounded: polls of single jobs differ."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _PARSED_URLS:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _too_large(self, status: int, method: str, url: str, big: BodyTooLarge) -> ProtocolError:
        err = ProtocolError(
            f"{self.provider}: {method} {urlsplit(url).path}: the answer (HTTP {status}) is larger than "
            f"{big.cap:,} bytes; jobrunner stopped reading it",
            provider=self.provider,
            status=status,
            hint=(f"raise providers.{self.provider}.max_body_bytes in jobrunner.yaml if answers this large are "
                  f"expected, else check that {self.base_url} is really a {self.provider} API endpoint"),
        )
        return self._scrub_error(err)

    def _transport_error(self, shown: str, why: str, *, sent: bool, idempotent: bool) -> TransportError:
        err = TransportError(
            f"{self.provider}: {shown} failed: {why}",
            provider=self.provider,
            hint=(
                "the request may have reached the provider: jobrunner looks the job up before creating it again"
                if sent and not idempotent
                else f"check the network and the {self.provider} base URL ({self.base_url})"
            ),
        )
        err.ambiguous = sent and not idempotent
        return self._scrub_error(err)

    def _out_of_time(self, shown: str, bound: CommandDeadline | None, attempts: int, *, sent: bool,
                     last: str | None = None) -> TransportError:
        """The error of a request that ran out of its own deadline or the command's."""
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        if bound is not None:
            why = f"stopped at the deadline of {bound.why}{tries}"
        else:
            why = f"no complete answer within {self.deadline:g}s{tries} (providers.{self.provider}.deadline)"
        if last:
            why += f"; last: {last}"
        err = self._transport_error(shown, why, sent=sent, idempotent=not sent)
        if not err.ambiguous:
            err.hint = (f"{self.provider} is not answering (or answers too slowly): check the network and "
                        f"{self.base_url}, then run the command again; jobs already running keep running")
        self.stats["errors"] += 1
        return err

    async def _backoff(self, attempt: int, retry_after: float | None, shown: str, why: str, end: float) -> bool:
        """Wait before the next attempt; False (no wait) when that would end past the deadline."""
        delay = self.policy.backoff(attempt, retry_after)
        if time.monotonic() + delay >= end:
            return False
        self.stats["retries"] += 1
        log.info("%s: %s: %s, retrying in %.2fs (attempt %d of %d)",
                 self.provider, shown, why, delay, attempt + 1, self.policy.max_attempts)
        await self._sleep(delay)
        return True

    def _retry_after(self, response: httpx.Response | JsonAnswer) -> float | None:
        if response.status_code not in (429, 503) and "retry-after" not in response.headers:
            return None
        value = parse_retry_after(response.headers.get("retry-after"), self._now())
        if value is None and response.status_code == 429:
            # Replicate's low-credit throttle carries `retry_after` in the body.
            try:
                body = jsonlib.loads(response.content)
            except ValueError:
                body = None
            hinted = body.get("retry_after") if isinstance(body, dict) else None
            if isinstance(hinted, (int, float)) and not isinstance(hinted, bool):
                value = max(0.0, float(hinted))
        return value

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, then the parsed JSON body (a ProtocolError when it is not JSON)."""
        answer = await self._send(method, path, idempotent=kwargs.pop("idempotent", None), **kwargs)
        if isinstance(answer, JsonAnswer):
            parsed, data = answer.json()
            if parsed:
                return data
            answer = answer.to_httpx()  # for parse_json to say what is wrong with it
        return self.parse_json(answer, kwargs.get("what"))

    def parse_json(self, response: httpx.Response, what: str | None = None) -> Any:
        shown = what or f"{response.request.method} {response.request.url.path}"
        ctype = response.headers.get("content-type", "")
        if not response.content.strip():
            raise self._protocol(response, shown, "an empty body where JSON was expected")
        if "json" not in ctype.lower():
            raise self._protocol(
                response, shown, f"content type {ctype or '(none)'} instead of JSON: {_excerpt(response.text, 120)}"
            )
        try:
            return jsonlib.loads(response.content)
        except jsonlib.JSONDecodeError as exc:
            raise self._protocol(response, shown, f"invalid or truncated JSON ({exc.msg}: byte {exc.pos})") from None
        except ValueError as exc:  # bytes that are not UTF-8/16/32 text (UnicodeDecodeError): no JSON position
            raise self._protocol(response, shown, f"invalid JSON: the body is not text ({exc})") from None

    def _protocol(self, response: httpx.Response, shown: str, problem: str) -> ProtocolError:
        err = ProtocolError(
            f"{self.provider}: {shown}: the provider answered HTTP {response.status_code} with {problem}",
            provider=self.provider,
            status=response.status_code,
            hint=f"is {self.base_url} really a {self.provider} API endpoint? A proxy or gateway may be in the way",
        )
        self._scrub_error(err)
        return err


def _describe(exc: httpx.TransportError) -> str:
    kind = {
        httpx.ConnectError: "could not connect",
        httpx.ConnectTimeout: "timed out connecting",
        httpx.PoolTimeout: "timed out waiting for a free connection",
        httpx.ReadTimeout: "timed out waiting for the answer",
        httpx.WriteTimeout: "timed out sending the request",
        httpx.RemoteProtocolError: "the connection was dropped",
        httpx.ReadError: "the connection failed while reading the answer",
        httpx.WriteError: "the connection failed while sending the request",
    }.get(type(exc), "transport error")
    text = str(exc).strip()
    return f"{kind} ({text})" if text else kind


__all__ = [
    "CommandDeadline",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_LOG_BYTES",
    "DEFAULT_TIMEOUT",
    "command_deadline",
    "current_deadline",
    "upload_seconds",
    "HttpClient",
    "RetryPolicy",
    "error_detail",
    "parse_retry_after",
    "translate_response",
    "utcnow",
]
