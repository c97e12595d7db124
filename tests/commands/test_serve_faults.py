"""`jobrunner serve`'s fault options: `--faults` and the single-fault flags make one checked set."""
from __future__ import annotations

import pytest

from jobrunner.commands.serve import _faults
from jobrunner.errors import UsageError


def test_flags_join_the_faults_spec_and_win_over_it() -> None:
    got = _faults("latency_ms=50,list_lag_s=2", "replicate", latency_ms=10.0, error_rate=0.25,
                  drop_after_create=None, list_lag_s=None, max_body_bytes=None)
    assert got == {"latency_ms": 10.0, "list_lag_s": 2.0, "error_rate": 0.25, "rate_limit": "replicate"}


def test_rate_limit_off_clears_it() -> None:
    assert _faults(None, "off") == {"rate_limit": None}
    assert _faults(None, None) == {}


@pytest.mark.parametrize(("spec", "flags", "says"), [
    ("latency_ms", {}, "--faults: fault setting 'latency_ms' is not name=value"),
    (None, {"error_rate": 2.0}, "error_rate"),
])
def test_bad_faults_are_usage_errors_naming_the_setting(spec: str | None, flags: dict[str, float], says: str) -> None:
    with pytest.raises(UsageError) as info:
        _faults(spec, None, **flags)
    assert says in str(info.value)
