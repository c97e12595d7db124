"""Client-side rate limiting: one async token bucket per provider and per request class.

Replicate documents 600 prediction creates per minute and 3000 other requests per minute, with
short bursts tolerated. Sending faster than that only buys 429 answers (and, for creates, a lost
slot in the reconciler's schedule), so every request first takes a token from the bucket of its
class. The buckets also learn from the server: a 429 pauses the class until `Retry-After` has
passed and slows it down a little; `ratelimit-remaining` / `ratelimit-reset` headers (sent by
Replicate on every answer) cap the tokens we believe we have and pause the class when the server
says its window is exhausted.

Request classes: `create` (prediction creates: Replicate's 600/min bucket) and `other`
(everything else, including training creates, which Replicate counts in its 3000/min bucket).

Time is injectable (`clock`, `sleep`) so tests never really wait.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

# The request classes and the limits are pure data the adapters name (jobrunner.providers.limits);
# they are re-exported here for the clients and tests that read them beside the buckets.
from jobrunner.providers.limits import CREATE, OTHER, REPLICATE_LIMITS, REQUEST_CLASSES, UNLIMITED, RateLimits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Burst allowance, in seconds' worth of tokens: Replicate tolerates "short bursts"; one second's
# worth (10 creates) keeps a cold start fast without tripping the server's own bucket.
DEFAULT_BURST_SECONDS = 1.0
# After a 429 the class runs at this fraction of its rate and recovers linearly on successes.
BACKOFF_FACTOR = 0.8
RECOVERY_PER_SUCCESS = 0.02
MIN_RATE_FRACTION = 0.1
DEFAULT_429_PAUSE = 1.0
_EPSILON = 1e-9


class TokenBucket:
    """An async token bucket: `rate_per_minute` tokens per minute, at most `burst` saved up.

    `rate_per_minute=None` means unlimited (acquire never waits) except while paused. Waiters are
    served in arrival order (asyncio.Lock is FIFO), so a burst of creates is spread evenly.
    """

    def __init__(
        self,
        rate_per_minute: float | None,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_minute is not None and rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive or None")
        self.configured_rate = rate_per_minute
        self.rate = rate_per_minute  # current (adapted) rate, per minute
        per_second = (rate_per_minute or 0) / 60.0
        self.burst = max(1.0, burst if burst is not None else per_second * DEFAULT_BURST_SECONDS)
        self.tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock: asyncio.Lock | None = None
        self.waited = 0.0  # total seconds callers spent waiting here (for benchmarks)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}/min, burst={self.burst:g}, tokens={self.tokens:.2f})"

    def _refill(self, now: float) -> None:
        # Nothing accrues while paused: after a throttle the bucket restarts empty and ramps up.
        start = max(self._updated, self._paused_until)
        if self.rate is not None and now > start:
            self.tokens = min(self.burst, self.tokens + (now - start) * self.rate / 60.0)
        self._updated = max(self._updated, now)

    def _delay(self, now: float) -> float:
        """Seconds to wait before a token is available (0 = take one now)."""
        if now < self._paused_until:
            return self._paused_until - now
        # The epsilon keeps float rounding from leaving a waiter a billionth of a token short.
        if self.rate is None or self.tokens >= 1.0 - _EPSILON:
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.rate

    def try_take(self) -> bool:
        """Take a token now if one is there and nobody is waiting for one; False otherwise (then
        `acquire`). Apply's creates with limits off take this path: no lock, no timer per request."""
        if self._lock is not None and self._lock.locked():
            return False  # waiters are served in arrival order: do not overtake them
        now = self._clock()
        self._refill(now)
        if self._delay(now) > 0:
            return False
        if self.rate is not None:
            self.tokens -= 1.0
        return True

    async def acquire(self) -> None:
        if self._lock is None:  # created lazily so the bucket can be built outside a loop
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                delay = self._delay(now)
                if delay <= 0:
                    if self.rate is not None:
                        self.tokens -= 1.0
                    return
                self.waited += delay
                await self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Take no token for `seconds` from now, and start from an empty bucket afterwards."""
        now = self._clock()
        self._refill(now)
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))
        self.tokens = min(self.tokens, 0.0)

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429: pause for Retry-After (or a second) and slow down (multiplicative decrease)."""
        self.pause(retry_after if retry_after is not None else DEFAULT_429_PAUSE)
        if self.rate is not None and self.configured_rate is not None:
            self.rate = max(self.configured_rate * MIN_RATE_FRACTION, self.rate * BACKOFF_FACTOR)

    def on_success(self) -> None:
        """An accepted request: recover towards the configured rate (additive increase)."""
        if self.rate is not None and self.configured_rate is not None and self.rate < self.configured_rate:
            self.rate = min(self.configured_rate, self.rate + self.configured_rate * RECOVERY_PER_SUCCESS)

    def on_server_budget(self, remaining: float | None, reset: float | None) -> None:
        """Honour `ratelimit-remaining` / `ratelimit-reset` from an answer.

        The server's count is the truth: never believe we hold more tokens than it says remain.
        At zero, a paced bucket simply continues at its rate (servers refill continuously, and
        Replicate always says `ratelimit-reset: 1`: pausing a whole second each time would halve
        the throughput); an unlimited bucket has no pace of its own, so it waits for the reset.
        """
        if remaining is None:
            return
        now = self._clock()
        self._refill(now)
        if remaining <= 0 and self.rate is None:
            self.pause(reset if reset is not None else DEFAULT_429_PAUSE)
        elif remaining < self.tokens:
            self.tokens = max(0.0, float(remaining))


class RateLimiter:
    """The buckets of one provider, one per request class."""

    def __init__(
        self, limits: RateLimits | None = None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        limits = limits or RateLimits()
        self.limits = limits
        self.buckets: dict[str, TokenBucket] = {
            CREATE: TokenBucket(limits.create_per_minute, burst=limits.create_burst, clock=clock, sleep=sleep),
            OTHER: TokenBucket(limits.other_per_minute, burst=limits.other_burst, clock=clock, sleep=sleep),
        }

    def reset_locks(self) -> None:
        """Forget the buckets' asyncio locks (they belong to one event loop); keep their state."""
        for bucket in self.buckets.values():
            bucket._lock = None

    def bucket(self, request_class: str) -> TokenBucket:
        return self.buckets.get(request_class) or self.buckets[OTHER]

    def try_take(self, request_class: str) -> bool:
        return self.bucket(request_class).try_take()

    async def acquire(self, request_class: str) -> None:
        await self.bucket(request_class).acquire()

    def observe(self, request_class: str, status: int, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from one answer of the provider."""
        bucket = self.bucket(request_class)
        if status == 429:
            bucket.on_throttled(retry_after)
            return
        bucket.on_server_budget(_number(headers.get("ratelimit-remaining")), _number(headers.get("ratelimit-reset")))
        if status < 400:
            bucket.on_success()


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


__all__ = [
    "CREATE",
    "OTHER",
    "REQUEST_CLASSES",
    "REPLICATE_LIMITS",
    "UNLIMITED",
    "RateLimiter",
    "RateLimits",
    "TokenBucket",
]
