"""JSON requests on the lean transport without httpx's Request and Response objects.

Why it exists: with `wire.py` under it, most of what was left of a create's client CPU was
httpx's client layer above the transport: building a `Request` (its URL merged, its headers
normalised twice, the body encoded and wrapped in a stream), `send` (auth flow, redirects, the
cookie jar, the stream wrappers) and a `Response` whose headers are looked up through
re-encoding on every `get`. For the two requests apply makes by the thousand, a JSON create and
a poll or list read, `HttpClient` builds the request's bytes here (the same bytes httpx would
send, in the same order: `tests/providers/test_jsonwire.py` compares them) and reads the answer
into a `JsonAnswer`, which is only turned into an `httpx.Response` when something goes wrong
(a non-2xx answer for `translate_response`, a body that is not JSON for `parse_json`) or a
caller of `HttpClient.request` wants one.

The transport, and so every failure and its httpx exception class (what counts as "not sent"),
is the lean transport's own: this module only replaces the objects above it. Anything else goes
through httpx as before (`JsonWire.prepare` returns None): respx or instrumentation patching
httpx (`wire.intercepted`), a transport a caller chose or a proxy httpx mounted for the URL,
files or form data, a request header that would replace one of the client's, values that are
not ASCII (httpx raises for them), a URL with a user name (httpx's basic auth), cookies in the
client's jar.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from jobrunner.providers.wire import DEFAULT_PORTS, AnswerHead, LeanTransport, intercepted

# httpx's own log line per request ("HTTP Request: ..."), kept for whoever turned it on.
_HTTPX_LOG = logging.getLogger("httpx")
# As httpx's `encode_json`: compact, UTF-8, no NaN (its ValueError is raised as before).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ROUTES = 64  # URLs kept prepared per client, as HttpClient keeps parsed ones
_JSON_TYPE = (b"Content-Type", b"application/json")
_LENGTH_ZERO = b"\r\nContent-Length: 0\r\n"  # where a template's body length goes
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Route:
    """Where a URL's requests go: its origin, request target and Host header."""

    url: httpx.URL
    origin: tuple[str, str, int]
    target: bytes
    host: bytes


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request, ready to be written: its bytes and its timeouts."""

    method: str
    route: Route
    wire: bytes
    timeouts: Mapping[str, float | None]


class Headers(dict[str, str]):
    """An answer's headers by lower-case name, repeated ones joined with ", " (as httpx's `get`)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


def header_map(raw: list[tuple[bytes, bytes]]) -> Headers:
    """`raw` as `Headers`; decoded as httpx decodes them (ASCII, else its own fallbacks)."""
    out: dict[str, str] = {}
    try:
        for name, value in raw:
            key, text = name.decode("ascii").lower(), value.decode("ascii")
            out[key] = f"{out[key]}, {text}" if key in out else text
    except UnicodeDecodeError:
        slow = httpx.Headers(raw)
        return Headers((key, slow[key]) for key in slow)
    return Headers(out)


class JsonAnswer:
    """A read answer: what `HttpClient` looks at on the way to a 2xx JSON body."""

    __slots__ = ("status_code", "version", "reason", "raw_headers", "headers", "content", "method", "url")

    def __init__(self, head: AnswerHead, method: str, url: httpx.URL) -> None:
        self.status_code = head.status
        self.version, self.reason = head.version, head.reason
        self.raw_headers = head.headers
        self.headers = header_map(head.headers)
        self.content = b""
        self.method, self.url = method, url

    @property
    def encoded(self) -> bool:
        """Is the body content-encoded (gzip and the like), for httpx's decoders?"""
        return self.headers.get("content-encoding", "identity").strip().lower() not in ("identity", "")

    def json(self) -> tuple[bool, Any]:
        """(True, the parsed body) for a JSON answer; (False, None) for anything `HttpClient.parse_json`
        must explain (empty, not JSON, not valid)."""
        if "json" not in self.headers.get("content-type", "").lower() or not self.content.strip():
            return False, None
        try:
            return True, json.loads(self.content)
        except ValueError:
            return False, None

    def to_httpx(self, stream: httpx.AsyncByteStream | None = None) -> httpx.Response:
        """The same answer as httpx would have made it: with `stream` still to be read, else
        with `content` already read."""
        response = httpx.Response(
            self.status_code, headers=self.raw_headers, stream=stream or httpx.ByteStream(self.content),
            request=httpx.Request(self.method, self.url),
            extensions={"http_version": self.version, "reason_phrase": self.reason},
        )
        if stream is None:
            response._content = self.content
        return response

    def log(self) -> None:
        """httpx's line for the request, when its logger is on."""
        if _HTTPX_LOG.isEnabledFor(logging.INFO):
            _HTTPX_LOG.info('HTTP Request: %s %s "%s %d %s"', self.method, self.url,
                            self.version.decode("ascii", "ignore"), self.status_code,
                            self.reason.decode("ascii", "ignore"))


class JsonWire:
    """Builds the bytes of `client`'s JSON and GET requests for its lean transport."""

    def __init__(self, client: httpx.AsyncClient, lean: LeanTransport) -> None:
        self.client, self.lean = client, lean
        # The client's own headers (Accept, User-Agent, ...), fixed when HttpClient built it.
        self._defaults = list(client.headers.raw)
        self._reserved = {name.lower() for name, _ in self._defaults} | {
            b"host", b"content-length", b"content-type", b"transfer-encoding", b"cookie"}
        self._routes: dict[str, Route | None] = {}
        self._templates: dict[Any, tuple[Route, bytes, bytes] | None] = {}

    def prepare(self, method: str, url: str, parsed: httpx.URL, *, json_body: Any, params: Any,
                headers: Mapping[str, str] | None, auth: tuple[str, str] | None,
                timeout: httpx.Timeout) -> Prepared | None:
        """The request's bytes, or None when it must go through httpx (see the module docstring)."""
        has_body = json_body is not None
        if (has_body and method not in _BODY_METHODS) or (not has_body and method != "GET"):
            return None
        if intercepted() or len(self.client.cookies.jar):
            return None
        # Every create of a batch has the same head but for its Content-Length: built once.
        key = None if params else (method, url, tuple(headers.items()) if headers else (), auth)
        template = self._templates.get(key, _MISSING) if key is not None else _MISSING
        if template is _MISSING:
            template = self._template(method, url, parsed, params, headers, auth, has_body)
            if key is not None:
                if len(self._templates) >= _ROUTES:
                    self._templates.clear()
                self._templates[key] = template
        if template is None:
            return None
        route, prefix, suffix = template
        if not has_body:
            return Prepared(method, route, prefix, timeout.as_dict())
        body = _ENCODER.encode(json_body).encode("utf-8")
        return Prepared(method, route, b"".join((prefix, str(len(body)).encode("ascii"), suffix, body)),
                        timeout.as_dict())

    def _template(self, method: str, url: str, parsed: httpx.URL, params: Any, headers: Mapping[str, str] | None,
                  auth: tuple[str, str] | None, has_body: bool) -> tuple[Route, bytes, bytes] | None:
        """(route, the head up to the Content-Length value, the rest of the head), or None for httpx.

        Headers in httpx's order: Host, the client's, the request's, Content-Length and
        Content-Type (of a JSON body), then the credential (httpx's auth flow adds it last)."""
        route = self._route(url, parsed) if not params else self._params_route(parsed, params)
        if route is None:
            return None
        raw = [(b"Host", route.host), *self._defaults]
        taken = set(self._reserved)
        try:
            for name, value in (headers or {}).items():
                key = name.encode("ascii")
                if key.lower() in self._reserved:
                    return None  # it would replace one of the client's headers: httpx's merge rules
                taken.add(key.lower())
                raw.append((key, value.encode("ascii")))
            if has_body:
                raw += ((b"Content-Length", b"0"), _JSON_TYPE)
            if auth is not None:
                raw.append((auth[0].encode("ascii"), auth[1].encode("ascii")))
                if raw[-1][0].lower() in taken:
                    return None
        except UnicodeEncodeError:
            return None  # httpx refuses it (with its own error)
        head = self.lean.head_bytes(method.encode("ascii"), route.target, raw)
        if head is None:
            return None
        if not has_body:
            return route, head, b""
        cut = head.rindex(_LENGTH_ZERO)
        return route, head[:cut + len(_LENGTH_ZERO) - 3], head[cut + len(_LENGTH_ZERO) - 2:]

    async def open(self, prepared: Prepared) -> tuple[AnswerHead, JsonAnswer]:
        """Send the request; the answer's head, and the `JsonAnswer` its body will be read into."""
        head = await self.lean.open(prepared.route.origin, prepared.wire, prepared.timeouts)
        return head, JsonAnswer(head, prepared.method, prepared.route.url)

    def _route(self, url: str, parsed: httpx.URL) -> Route | None:
        if url in self._routes:
            return self._routes[url]
        if len(self._routes) >= _ROUTES:
            self._routes.clear()
        route = self._routes[url] = self._route_of(parsed)
        return route

    def _params_route(self, parsed: httpx.URL, params: Any) -> Route | None:
        # As httpx's build_request: the client's (no) params merged with the request's, which
        # replace the URL's query.
        return self._route_of(httpx.URL(parsed, params=httpx.QueryParams().merge(params)))

    def _route_of(self, url: httpx.URL) -> Route | None:
        """A URL the lean transport takes, on the client's own transport (no proxy mounted)."""
        if url.scheme not in DEFAULT_PORTS or not url.host or url.userinfo:
            return None
        if self.client._transport_for_url(url) is not self.lean:
            return None
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        return Route(url, origin, url.raw_path, url.netloc)


__all__ = ["Headers", "JsonAnswer", "JsonWire", "Prepared", "Route", "header_map"]
