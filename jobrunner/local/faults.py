"""Fault injection and limits for the local platform: off by default, for tests and benchmarks.

Knobs (`FaultConfig`): added latency (`latency_ms` plus up to `latency_jitter_ms`), a random error
rate answered with 500/503 (`error_rate`, `error_statuses`) or a deterministic `fail_next` count,
429 rate limits with `Retry-After` from token buckets (`rate_limit="replicate"` is Replicate's
documented 600 creates/min and 3000 other requests/min; `create_per_minute` / `other_per_minute` /
`burst` set them explicitly), dropping the connection after a create was committed
(`drop_after_create` rate, a deterministic `drop_next_creates` count, or every n-th create with
`drop_every_nth_create`), a lagging list (`list_lag_s`: list endpoints of both wires hide jobs
younger than that many seconds, as an eventually consistent provider index would, while GET of
one job still finds them), and the request-size limit `max_body_bytes` (413).

Scheduled knobs make a fault fire on every run, not by chance (a test that asserts a fault was met
must not depend on a random draw): `http_429_at` and `http_5xx_at` answer the listed request
numbers (1-based, counting every non-admin request since the knobs were last set) with a 429
(`Retry-After: retry_after_s`) or with the first of `error_statuses`; `drop_every_nth_create`
drops the connection after every n-th committed create. Lists are written `3|7|12` in the text
forms.

They are set by `jobrunner serve` flags, by the environment variable `JOBRUNNER_LOCAL_FAULTS`
(`"latency_ms=50,error_rate=0.1,rate_limit=replicate"`), and at run time through the token-guarded
admin route `POST /_admin/faults` (a JSON object of knobs; `{"reset": true}` turns everything off).
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024

# Replicate's documented limits: 600 prediction creates/min, 3000 other requests/min, with "short
# bursts" allowed (we allow ten seconds' worth), and a much larger bucket for polling one prediction.
REPLICATE_PRESET = {"create_per_minute": 600.0, "other_per_minute": 3000.0, "get_per_minute": 60000.0}


class FaultConfigError(ValueError):
    """A fault knob has an unknown name or a bad value."""


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 503])
    fail_next: int = 0
    rate_limit: str | None = None  # None | "replicate" | "custom"
    create_per_minute: float | None = None
    other_per_minute: float | None = None
    get_per_minute: float | None = None
    burst: float | None = None
    drop_after_create: float = 0.0
    drop_next_creates: int = 0
    drop_every_nth_create: int = 0  # 3: the 3rd, 6th, 9th... committed create is dropped
    list_lag_s: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    seed: int | None = None
    # Scheduled faults (see the module docstring): deterministic, whatever the random draws.
    http_429_at: list[int] = field(default_factory=list)
    http_5xx_at: list[int] = field(default_factory=list)
    retry_after_s: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def active(self) -> bool:
        return bool(
            self.latency_ms or self.latency_jitter_ms or self.error_rate or self.fail_next
            or self.rate_limit or self.drop_after_create or self.drop_next_creates
            or self.drop_every_nth_create
            or self.scheduled()
        )

    def scheduled(self) -> bool:
        """Is a scheduled 429 or 5xx set?"""
        return bool(self.http_429_at or self.http_5xx_at)


_FIELDS = {f.name: f for f in fields(FaultConfig)}
# Knobs an empty value turns off (None) rather than back to their default.
_CLEARED_TO_NONE = ("rate_limit", "create_per_minute", "other_per_minute", "get_per_minute", "burst", "seed")
_INTEGER_KNOBS = ("fail_next", "drop_next_creates", "drop_every_nth_create", "max_body_bytes", "seed", "retry_after_s")


def _coerce(name: str, value: Any) -> Any:
    if name not in _FIELDS:
        raise FaultConfigError(f"unknown fault knob {name!r}; known: {', '.join(sorted(_FIELDS))}")
    if name in _SCHEDULE_LISTS:
        return _coerce_schedule(name, value)
    if value is None or value == "":
        return None if name in _CLEARED_TO_NONE else _FIELDS[name].default
    try:
        if name == "error_statuses":
            items = value if isinstance(value, list) else str(value).replace("|", " ").replace("/", " ").split()
            statuses = [int(v) for v in items]
            if not statuses or any(s < 400 or s > 599 for s in statuses):
                raise ValueError("statuses must be 4xx/5xx codes")
            return statuses
        if name == "rate_limit":
            text = str(value).lower()
            if text in ("off", "none", "false", "0"):
                return None
            if text not in ("replicate", "custom"):
                raise ValueError("use 'replicate' or 'custom'")
            return text
        number: float = int(value) if name in _INTEGER_KNOBS else float(value)
    except (TypeError, ValueError) as exc:
        raise FaultConfigError(f"bad value for fault knob {name!r}: {value!r} ({exc})") from None
    if name in ("error_rate", "drop_after_create") and not 0.0 <= number <= 1.0:
        raise FaultConfigError(f"{name} must be between 0 and 1, got {value!r}")
    if isinstance(number, (int, float)) and number < 0:
        raise FaultConfigError(f"{name} must not be negative, got {value!r}")
    return number


_SCHEDULE_LISTS = ("http_429_at", "http_5xx_at")


def _coerce_schedule(name: str, value: Any) -> list[int]:
    """`[3, 7]`, `"3|7"` or `"3 7"` -> `[3, 7]`: request numbers, each at least 1."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).replace("|", " ").replace("/", " ").split()
    try:
        numbers = sorted({int(v) for v in items})
    except (TypeError, ValueError) as exc:
        raise FaultConfigError(f"bad value for fault knob {name!r}: {value!r} ({exc})") from None
    if any(n < 1 for n in numbers):
        raise FaultConfigError(f"{name} lists request numbers counted from 1, got {value!r}")
    return numbers


def parse_faults(text: str | None) -> dict[str, Any]:
    """`"latency_ms=50,error_rate=0.1"` -> `{"latency_ms": 50.0, "error_rate": 0.1}` (validated)."""
    out: dict[str, Any] = {}
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise FaultConfigError(f"fault setting {part!r} is not name=value")
        out[name.strip()] = _coerce(name.strip(), value.strip())
    return out


class _Bucket:
    def __init__(self, per_minute: float, burst: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst)
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when a token was taken, else seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else 60.0

    def remaining(self) -> int:
        return int(self.tokens)


@dataclass
class Decision:
    """What the middleware should do with one request."""

    delay: float = 0.0
    status: int | None = None  # answer with this error status instead of running the request
    retry_after: int | None = None
    ratelimit_remaining: int | None = None


class FaultState:
    """The live fault configuration plus its token buckets and random source."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._buckets: dict[str, _Bucket] = {}
        self._creates = 0  # committed creates seen, for `drop_every_nth_create`
        self._requests = 0  # non-admin requests decided since the knobs were last set

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        base = FaultConfig() if changes.get("reset") else FaultConfig(**self.config.as_dict())
        for name, value in changes.items():
            if name == "reset":
                continue
            setattr(base, name, _coerce(name, value))
        self.config = base
        self._rng = random.Random(base.seed)
        self._buckets = {}
        self._creates = 0
        self._requests = 0
        return base

    def _limits(self) -> dict[str, float] | None:
        c = self.config
        if not c.rate_limit:
            return None
        limits = dict(REPLICATE_PRESET) if c.rate_limit == "replicate" else {}
        for key in ("create_per_minute", "other_per_minute", "get_per_minute"):
            value = getattr(c, key)
            if value is not None:
                limits[key] = value
        return limits

    def decide(self, category: str, now: float) -> Decision:
        """`category` is `create`, `get` (polling one job) or `other`."""
        c = self.config
        decision = Decision()
        self._requests += 1
        if c.scheduled() and self._scheduled_status(decision):
            return decision
        if c.latency_ms or c.latency_jitter_ms:
            decision.delay = (c.latency_ms + self._rng.random() * c.latency_jitter_ms) / 1000.0
        limits = self._limits()
        if limits is not None:
            per_minute = limits.get(f"{category}_per_minute", limits.get("other_per_minute"))
            if per_minute is not None:
                bucket = self._buckets.get(category)
                if bucket is None:
                    burst = c.burst if c.burst is not None else per_minute / 6.0
                    bucket = self._buckets[category] = _Bucket(per_minute, burst, now)
                wait = bucket.take(now)
                decision.ratelimit_remaining = bucket.remaining()
                if wait > 0:
                    decision.status = 429
                    decision.retry_after = max(1, math.ceil(wait))
                    return decision
        if c.fail_next > 0:
            c.fail_next -= 1
            decision.status = c.error_statuses[0] if len(c.error_statuses) == 1 else self._rng.choice(c.error_statuses)
            return decision
        if c.error_rate and self._rng.random() < c.error_rate:
            decision.status = self._rng.choice(c.error_statuses)
        return decision

    def _scheduled_status(self, decision: Decision) -> bool:
        """Answer this request (number `self._requests`) with a scheduled 429 or 5xx? Fills `decision`."""
        c = self.config
        if self._requests in c.http_429_at:
            decision.status = 429
            decision.retry_after = max(1, c.retry_after_s)
            return True
        if self._requests in c.http_5xx_at:
            decision.status = c.error_statuses[0]
            return True
        return False

    def should_drop_create(self) -> bool:
        """Called after a create was committed: drop the connection instead of answering?"""
        c = self.config
        self._creates += 1
        if c.drop_every_nth_create and self._creates % c.drop_every_nth_create == 0:
            return True
        if c.drop_next_creates > 0:
            c.drop_next_creates -= 1
            return True
        return bool(c.drop_after_create) and self._rng.random() < c.drop_after_create

    def listed_before(self, now: float) -> float | None:
        """With `list_lag_s` set: the epoch time after which created jobs are left out of lists."""
        lag = self.config.list_lag_s
        return now - lag if lag > 0 else None
