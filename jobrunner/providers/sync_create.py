"""When to ask Replicate to hold a prediction create until the prediction is done (`Prefer: wait`).

Replicate's "sync mode" (`Prefer: wait=n`, n = 1..60 s) answers a create only once the prediction
finished or n seconds passed. For the fast predictions of a typical evaluation batch the create
answer then already carries the final status and output, and the job never has to be polled: one
request per prediction instead of a create plus polls. For slow models it only holds a create slot
for n seconds before answering with `starting`/`processing` as usual, which costs throughput.

So the wait is short (1 s, the minimum) and adaptive, per provider for one command: creates ask
for it until `MISSES_TO_STOP` answers in a row come back unfinished; after that they are sent
without it, and one create in `PROBE_EVERY` asks again, in case the jobs got faster. Trainings
never use it (Replicate's sync mode is for predictions). `providers.<name>.sync_wait` in
jobrunner.yaml sets the seconds (1..60) or turns it off (`false` / `0`).
"""
from __future__ import annotations

from typing import Any

from jobrunner.errors import ConfigError

DEFAULT_WAIT_SECONDS = 1
MISSES_TO_STOP = 3
PROBE_EVERY = 100


class SyncCreatePolicy:
    """Decides per create whether to send `Prefer: wait=n`, learning from the answers."""

    def __init__(self, wait_seconds: int | None = DEFAULT_WAIT_SECONDS) -> None:
        self.wait_seconds = wait_seconds  # None: never
        self.misses = 0  # unfinished answers in a row
        self.since_probe = 0  # creates sent without the header since it was turned off
        self.hits = 0
        self.sent = 0

    @property
    def active(self) -> bool:
        return self.wait_seconds is not None and self.misses < MISSES_TO_STOP

    def header(self) -> str | None:
        """The `Prefer` value for the next create, or None to send it without."""
        if self.wait_seconds is None:
            return None
        if self.misses >= MISSES_TO_STOP:
            self.since_probe += 1
            if self.since_probe < PROBE_EVERY:
                return None
            self.since_probe = 0  # probe once; a finished answer turns the wait back on
        self.sent += 1
        return f"wait={self.wait_seconds}"

    def observe(self, finished: bool) -> None:
        """The answer to a create sent with the header: was the prediction already terminal?"""
        if finished:
            self.hits += 1
            self.misses = 0
        else:
            self.misses += 1

    @classmethod
    def from_config(cls, value: Any, provider: str) -> SyncCreatePolicy:
        """`providers.<provider>.sync_wait`: seconds 1..60, or false/0 to turn it off (unset: 1)."""
        if value is None or value is True:
            return cls()
        if value is False or (isinstance(value, int) and value == 0):
            return cls(None)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
            raise ConfigError(
                f"jobrunner.yaml: providers.{provider}.sync_wait must be a whole number of seconds from 1 to 60, "
                f"or false, got {value!r}",
                hint="Replicate holds a create at most 60 s (Prefer: wait=n); false sends creates without waiting",
            )
        return cls(value)


__all__ = ["DEFAULT_WAIT_SECONDS", "MISSES_TO_STOP", "PROBE_EVERY", "SyncCreatePolicy"]
