"""Shared pieces of the reliability suites: a real local platform on a loopback port, workspaces,
the real CLI (in-process or as a separate process that can be killed), and the exactly-once audit.

The audit is the heart of every suite: it lists what the platform itself holds (its own listing,
not our state) and checks it against the state file: every remote job belongs to exactly one
address and attempt, every address's attempts each have exactly one remote job, and every desired
address converged. "Zero duplicates, zero lost" is that check passing.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx

# The CLI helpers are tests/helpers/cli.py's, re-exported for the suites that import them from here.
from tests.helpers.cli import Result as Result
from tests.helpers.cli import run_cli as run_cli
from tests.helpers.cli import run_process as run_process
from tests.helpers.cli import write_workspace
from tests.platform_fixture import serve_platform as shared_serve_platform

REPO = Path(__file__).resolve().parents[2]

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"
LOOKUP_WINDOW = "2"  # seconds (JOBRUNNER_LOOKUP_WINDOW) for CLI runs against the test platform


@dataclass
class Platform:
    url: str
    token: str
    data_dir: Path
    app: Any

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0)

    def faults(self, **knobs: Any) -> None:
        with self.client() as c:
            c.post("/_admin/faults", json=knobs).raise_for_status()

    def jobs(self, kind: str) -> list[dict[str, Any]]:
        """Every prediction or training the platform holds, from its own paginated listing."""
        out: list[dict[str, Any]] = []
        with self.client() as c:
            url: str | None = f"/v1/{kind}"
            while url:
                page = c.get(url).json()
                out += page["results"]
                url = page.get("next")
        return out


@contextlib.contextmanager
def serve_platform(data_dir: Path, token: str | None = None, **options: Any) -> Iterator[Platform]:
    """The shared live-platform helper, with a fresh token unless one is given."""
    token = token or "jrl_rel_" + secrets.token_hex(12)
    with shared_serve_platform(data_dir, token, **options) as live:
        yield Platform(live.url, live.token, live.data_dir, live.app)


def make_workspace(root: Path, platform: Platform) -> Path:
    return write_workspace(root, platform.url)


def clean_env(platform: Platform, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL",
                        "JOBRUNNER_TEST_CRASH_AT", "JOBRUNNER_LOCAL_FAULTS")}
    # The platform's list never lags unless a test sets `list_lag_s`: a short lookup window keeps the
    # fault suites' re-sends quick (test_lookups.py sets its own window against a lagging list).
    env.update(JOBRUNNER_LOCAL_TOKEN=platform.token, PYTHONPATH=str(REPO), JOBRUNNER_LOOKUP_WINDOW=LOOKUP_WINDOW)
    env.update(extra)
    return env


def apply_until_converged(cwd: Path, env: dict[str, str], *paths: str, rounds: int = 5) -> list[Result]:
    """Re-run `apply --auto-approve` until it exits 0 (a user's response to failures caused by faults)."""
    results = []
    for _ in range(rounds):
        r = run_process(["apply", "--auto-approve", *paths], cwd, env, timeout=300)
        results.append(r)
        assert "Traceback" not in r.output, r.output
        if r.code == 0:
            return results
    raise AssertionError("apply did not converge:\n" + "\n---\n".join(r.output[-3000:] for r in results))


def load_state(root: Path) -> dict[str, Any]:
    """The state as jobrunner reads it: the snapshot, with the journal of a cut-short apply replayed."""
    from jobrunner.state.local_file import read_state_json

    return read_state_json(root / ".jobrunner" / "state.json")


@dataclass
class Audit:
    remote_jobs: int = 0
    addresses: int = 0
    problems: list[str] = field(default_factory=list)


def audit_exactly_once(platform: Platform, root: Path, since: str, expected: set[str]) -> Audit:
    """Compare the platform's own listing (jobs created since `since`) with the state file.

    Zero duplicates: no address has two remote jobs for one attempt, and no remote job is claimed
    twice (an attempt is a fingerprint and an attempt number: a replaced job starts again at 1).
    Agreement: the status state records for each address's current job is the platform's. Zero
    lost: every remote job created since `since` is recorded under some address, and every
    expected address is recorded and succeeded.
    """
    remote = {j["id"]: j for kind in ("predictions", "trainings") for j in platform.jobs(kind)
              if j["created_at"] >= since}
    state = load_state(root)["addresses"]
    audit = Audit(remote_jobs=len(remote), addresses=len(state))
    claimed: dict[str, str] = {}
    for address, st in state.items():
        if st.get("job_kind") == "model":
            continue
        per_attempt: dict[tuple[str, int], list[str]] = {}
        for attempt in st.get("history") or []:
            per_attempt.setdefault((attempt.get("fingerprint") or "", int(attempt["attempt"])), []).append(
                attempt["remote_id"])
            if attempt["remote_id"] in claimed:
                audit.problems.append(
                    f"{attempt['remote_id']} claimed by {claimed[attempt['remote_id']]} and {address}"
                )
            claimed[attempt["remote_id"]] = address
        for (_, n), ids in per_attempt.items():
            if len(ids) != 1:
                audit.problems.append(f"{address} attempt {n} has {len(ids)} remote jobs: {ids}")
        seen = remote.get(st.get("remote_id") or "")
        if seen is not None and seen["status"] in ("succeeded", "failed", "canceled") \
                and st.get("status") != seen["status"]:
            audit.problems.append(f"{address}: state says {st['remote_id']} is {st.get('status')}, "
                                  f"the platform says {seen['status']}")
        if st.get("remote_id") not in claimed:
            audit.problems.append(f"{address}: current remote id {st.get('remote_id')} is not in its history")
        if st.get("intent") is not None:
            audit.problems.append(f"{address}: an intent is still pending")
    for rid in remote:
        if rid not in claimed:
            audit.problems.append(f"remote job {rid} ({remote[rid].get('status')}) is recorded under no address (lost)")
    for address in expected:
        st = state.get(address)
        if st is None:
            audit.problems.append(f"{address} is missing from state")
        elif st.get("status") != "succeeded":
            audit.problems.append(f"{address} is {st.get('status')}, not succeeded")
        elif st.get("job_kind") != "model" and remote.get(st["remote_id"], {}).get("status") != "succeeded":
            audit.problems.append(f"{address}: state says succeeded, the platform says "
                                  f"{remote.get(st['remote_id'], {}).get('status')}")
    return audit


def platform_now(platform: Platform) -> str:
    """A timestamp in the platform's own format, for 'created since' filters."""
    from datetime import datetime

    from jobrunner.local.clock import rfc3339

    time.sleep(0.01)
    return rfc3339(datetime.now(UTC)) or ""
