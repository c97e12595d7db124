"""The checker of the model-based test: invariants over what the platform holds and what state says.

It is independent of jobrunner's code: it reads the platform's own SQLite database (`platform.db`,
read-only) and the state file as JSON, and compares them with the model's `World` (what the
manifests want). It never imports jobrunner. It keeps a little memory across steps (which address
claimed which remote job, and under which generation of the address), so that a job forgotten
because its row was removed is told apart from a job lost.

Invariants, checked after every step (`strict` ones only at a quiescent point: an apply that
exited 0 or 5 with no intent pending, when every job must be accounted for):
- shared-id: no remote id is in the history of two addresses;
- one-per-attempt: an address has at most one remote job per fingerprint and attempt;
- one-live: an address has at most one live (starting/processing) job on the platform;
- known-id: every remote id state records exists on the platform;
- agree: a terminal status in state is the platform's status (strict: a job the platform finished
  is finished in state too);
- canceled-in-manifest: no job of an address still in the manifests, with the input the manifests
  still ask for, was canceled;
- not-forgotten: an address still in the manifests that state recorded is not dropped from state
  (except after the state file was damaged and restored from its backup, until the next apply);
- backup-intact: after damage to `state.json`, `state.json.bak` still parses;
- lost (strict): every platform job is recorded under an address, or was recorded under one the
  manifests no longer have, or ran an input the manifests asked for under an address that has
  since been removed or changed (an interrupted create the re-run found and forgot); such a job
  must not be running (removal cancels);
- no-intent (strict): no intent is left pending;
- converged (strict): every address in the manifests is in state, and succeeded on the platform
  (failed is allowed on exit 5, when its attempts ran out);
- outputs (strict, exit 0): each batch output file holds exactly the manifest's keys, once, succeeded;
- secrets: no sentinel (secret inputs, the platform token) in any file under the workspace other
  than the manifests, nor in any command's output;
- clean-exit: no traceback, and exit codes from the documented set.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobrunner.errors import StateError
from jobrunner.state.journal import JOURNAL_SUFFIX
from jobrunner.state.local_file import read_state_json
from tests.model.world import World

LIVE = ("starting", "processing")
TERMINAL = ("succeeded", "failed", "canceled", "aborted")


@dataclass
class PlatformJob:
    id: str
    kind: str
    status: str
    input: dict[str, Any]
    error: str | None
    version: str | None = None


def read_platform(db: Path) -> dict[str, PlatformJob]:
    """Every job the platform holds, read straight from its SQLite file (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id, kind, status, input, error, version FROM jobs ORDER BY seq").fetchall()
    finally:
        conn.close()
    return {r[0]: PlatformJob(r[0], r[1], r[2], json.loads(r[3] or "{}"), r[4], r[5]) for r in rows}


def read_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(addresses, None) or (None, why it does not parse)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))  # the snapshot itself is never torn
        addresses = doc["addresses"]
    except FileNotFoundError:
        return {}, None
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if path.with_name(path.name + JOURNAL_SUFFIX).exists():  # an apply was cut short: replay its journal
        try:
            addresses = read_state_json(path)["addresses"]
        except StateError as exc:
            return None, f"journal: {exc.message}"
    return addresses, None


def _key(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _key(a) == _key(b)


@dataclass
class Observation:
    """What one step produced, as the checker needs it."""

    outputs: list[str] = field(default_factory=list)  # every stdout/stderr of the step's commands
    codes: list[int | str] = field(default_factory=list)  # their exit codes ("killed", "hung")
    applied: int | None = None  # the exit code of an apply that ran to its end, if any
    damaged: bool = False  # the step damaged and restored the state file
    state_lost: bool = False  # the step deleted the state file and its backup (then `state recover`)


@dataclass
class Checker:
    workspace: Path
    platform_db: Path
    secrets: tuple[str, ...]
    manifests: frozenset[str]
    # rid -> (address, generation) for every claim ever seen
    claims: dict[str, tuple[str, int]] = field(default_factory=dict)
    # address -> generation at which state last held it
    held: dict[str, int] = field(default_factory=dict)
    restored: bool = False  # state was restored from a backup since the last quiescent point
    # Remote ids claimed when the state (and its backup) was lost, or restored from its backup:
    # recovery finds the jobs that ran what the manifests ask for now, not the history of replaced
    # jobs.
    lost_claims: set[str] = field(default_factory=set)
    # canonical input -> every (address, generation) the manifests ever asked to run it
    asked: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    checks: int = 0  # check() calls: one per step, and one per final apply
    evaluations: int = 0  # invariants evaluated, summed over the checks

    def check(self, world: World, obs: Observation) -> list[str]:
        problems: list[str] = []
        problems += self._outputs_clean(obs)
        problems += self._secrets_on_disk()
        if obs.damaged:
            self.restored = True
        if obs.state_lost or obs.damaged:
            # A restore from the backup loses what came after the backup as surely as a lost state
            # loses everything (since the journal, the backup predates the whole last apply): the
            # same rule for what recovery cannot give back.
            self.lost_claims |= set(self.claims)
        addresses, why = read_state(self.workspace / ".jobrunner" / "state.json")
        if addresses is None:
            return problems + [f"state.json does not parse after the step: {why}"]
        jobs = read_platform(self.platform_db)
        desired = world.desired()
        gen = world.generation
        for address, (_, want) in desired.items():
            self.asked.setdefault(_key(want), set()).add((address, gen.get(address, 0)))
        strict = obs.applied in (0, 5) and not any(st.get("intent") for st in addresses.values())
        problems += self._claims(addresses, jobs, desired, gen)
        problems += self._forgotten(addresses, desired, gen)
        if strict:
            problems += self._strict(addresses, jobs, desired, gen, obs.applied)
            if obs.applied == 0:
                problems += self._output_files(world)
            self.restored = False
        self.held = {a: gen.get(a, 0) for a in addresses if a in desired}
        self.checks += 1
        # Always: shared-id, one-per-attempt, one-live, known-id, agree, canceled-in-manifest,
        # not-forgotten, secrets, clean-exit; strict: lost, no-intent, converged (+ outputs on 0).
        self.evaluations += 9 + (3 if strict else 0) + (1 if strict and obs.applied == 0 else 0)
        return problems

    def note_claims(self, world: World) -> None:
        """Remember the remote jobs state records right now, before the runner damages it in the
        same step as an apply (crash_recover): the restore loses them, and a job recovery rightly
        leaves behind (e.g. a gen row's job on a training since retrained) is told from a lost
        one only if its claim was seen."""
        addresses, _ = read_state(self.workspace / ".jobrunner" / "state.json")
        for address, st in (addresses or {}).items():
            for h in st.get("history") or []:
                if h.get("remote_id"):
                    self.claims.setdefault(h["remote_id"], (address, world.generation.get(address, 0)))

    # --- always -------------------------------------------------------------------------------
    def _outputs_clean(self, obs: Observation) -> list[str]:
        out = []
        for text in obs.outputs:
            if "Traceback (most recent call last)" in text:
                out.append("clean-exit: a command printed a traceback:\n" + text[-1500:])
            for s in self.secrets:
                if s in text:
                    out.append(f"secrets: sentinel {s[:16]}... in a command's output:\n" + _around(text, s))
        return out

    def _secrets_on_disk(self) -> list[str]:
        out = []
        for path in sorted(self.workspace.rglob("*")):
            rel = path.relative_to(self.workspace).as_posix()
            if not path.is_file() or rel in self.manifests:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for s in self.secrets:
                if s.encode() in data:
                    out.append(f"secrets: sentinel {s[:16]}... in {rel}: "
                               + _around(data.decode("utf-8", "replace"), s))
        return out

    def _claims(self, addresses: dict[str, Any], jobs: dict[str, PlatformJob],
                desired: dict[str, tuple[str, dict[str, Any]]], gen: dict[str, int]) -> list[str]:
        out = []
        owner: dict[str, str] = {}
        for address, st in sorted(addresses.items()):
            if st.get("job_kind") == "model":
                continue
            per_attempt: dict[tuple[str, int], list[str]] = {}
            live = []
            for h in st.get("history") or []:
                rid = h.get("remote_id")
                per_attempt.setdefault((h.get("fingerprint") or "", int(h.get("attempt") or 0)), []).append(rid)
                if rid in owner and owner[rid] != address:
                    out.append(f"shared-id: remote job {rid} is claimed by {owner[rid]} and {address}")
                owner[rid] = address
                self.claims.setdefault(rid, (address, gen.get(address, 0)))
                job = jobs.get(rid)
                if job is None:
                    out.append(f"known-id: {address} records remote job {rid}, which the platform does not have")
                elif job.status in LIVE:
                    live.append(rid)
            for (_, n), ids in per_attempt.items():
                if len(set(ids)) > 1:
                    out.append(f"one-per-attempt: {address} attempt {n} has {len(ids)} remote jobs: {ids}")
            if len(set(live)) > 1:
                out.append(f"one-live: {address} has {len(set(live))} live jobs on the platform: {live}")
            rid = st.get("remote_id")
            job = jobs.get(rid or "")
            if rid and job is None:
                out.append(f"known-id: {address}'s current remote job {rid} is not on the platform")
            elif job is not None and st.get("status") in TERMINAL and st.get("status") != job.status:
                out.append(f"agree: state says {address} ({rid}) is {st.get('status')}, the platform says {job.status}")
        for rid, job in jobs.items():
            claim = self.claims.get(rid)
            if job.status != "canceled" or claim is None:
                continue
            address, g = claim
            want = desired.get(address)
            if want is not None and gen.get(address, 0) == g and _same(want[1], job.input) \
                    and not address.startswith("PredictionBatch/gen["):  # gen's version moves with the training
                out.append(f"canceled-in-manifest: {rid} of {address} was canceled, yet the manifests still "
                           "ask for it with that very input")
        return out

    def _forgotten(self, addresses: dict[str, Any], desired: dict[str, Any], gen: dict[str, int]) -> list[str]:
        if self.restored:
            return []
        return [f"not-forgotten: {a} is still in the manifests but state dropped it"
                for a, g in sorted(self.held.items())
                if a in desired and gen.get(a, 0) == g and a not in addresses]

    # --- at quiescent points ------------------------------------------------------------------
    def _strict(self, addresses: dict[str, Any], jobs: dict[str, PlatformJob],
                desired: dict[str, tuple[str, dict[str, Any]]], gen: dict[str, int], code: int | None) -> list[str]:
        out = []
        claimed_now = {h.get("remote_id"): a for a, st in addresses.items() for h in st.get("history") or []}
        for rid, job in jobs.items():
            if rid in claimed_now:
                continue
            claim = self.claims.get(rid)
            if claim is None and self._superseded(job, desired, gen):
                # An interrupted create of a row since removed or changed: found by the re-run's
                # lookup and forgotten (terminal), which is right; still running, it is not.
                if job.status in LIVE:
                    out.append(f"lost: platform job {rid} ({job.status}, input {_short(job.input)}) was "
                               "created for a row since removed or changed, and is still running")
                continue
            if claim is None:
                twins = sorted(a for a, (_, want) in desired.items() if _same(want, job.input))
                out.append(f"lost: platform job {rid} ({job.kind}, {job.status}, input {_short(job.input)}) "
                           "is recorded under no address, and never was"
                           + (f" (a duplicate of {', '.join(twins)}?)" if twins else ""))
                continue
            address, g = claim
            if (
                address in desired
                and gen.get(address, 0) == g
                and self._lost_with_state(job, addresses.get(address), jobs)
            ):
                continue
            if address in desired and gen.get(address, 0) == g:
                out.append(f"lost: platform job {rid} of {address} ({job.status}) is no longer recorded, "
                           "yet the address is still in the manifests")
            elif job.status in LIVE:
                out.append(f"lost: platform job {rid} of removed {address} is still {job.status} (removal cancels)")
        for address, (_kind, want) in sorted(desired.items()):
            st = addresses.get(address)
            if st is None:
                out.append(f"converged: {address} is in the manifests but not in state after apply exited {code}")
                continue
            job = jobs.get(st.get("remote_id") or "")
            if job is None:
                continue  # known-id reported it
            if job.status in LIVE and st.get("status") in TERMINAL:
                continue  # agree reported it
            allowed = ("succeeded", "failed") if code == 5 else ("succeeded",)
            if job.status not in allowed:
                out.append(f"converged: {address} is {job.status} on the platform after apply exited {code}")
            elif st.get("status") != job.status:
                out.append(f"agree: state says {address} is {st.get('status')}, the platform says {job.status}")
            if not address.startswith("PredictionBatch/gen[") and not _same(want, job.input):
                out.append(f"converged: {address}'s job {job.id} ran input {_short(job.input)}, "
                           f"the manifests ask for {_short(want)}")
        return out

    def _lost_with_state(self, job: PlatformJob, st: dict[str, Any] | None, jobs: dict[str, PlatformJob]) -> bool:
        """A job the address held when the state was lost, not found again, and rightly so: it is
        ended, and the address's job now is not a duplicate of it made since the loss (either
        another job held before the loss, e.g. an identical row's, or one that ran another input
        or version: the old one was replaced)."""
        if job.id not in self.lost_claims or job.status in LIVE or st is None:
            return False
        current = jobs.get(st.get("remote_id") or "")
        if current is None or current.id in self.lost_claims:
            return True
        return not (_same(current.input, job.input) and current.version == job.version)

    def _superseded(self, job: PlatformJob, desired: dict[str, tuple[str, dict[str, Any]]],
                    gen: dict[str, int]) -> bool:
        """Did the manifests once ask for this job's input under an address that no longer asks
        for it (removed, renamed or changed since)?"""
        for address, g in self.asked.get(_key(job.input), ()):
            want = desired.get(address)
            if want is None or gen.get(address, 0) != g or not _same(want[1], job.input):
                return True
        return False

    def _output_files(self, world: World) -> list[str]:
        out = []
        for rel, keys in world.batch_keys().items():
            path = self.workspace / rel
            try:
                lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, ValueError) as exc:
                out.append(f"outputs: {rel} cannot be read after apply exited 0: {exc}")
                continue
            got = [str(line.get("key")) for line in lines]
            if sorted(got) != sorted(keys):
                out.append(f"outputs: {rel} holds keys {sorted(got)}, the manifests have {sorted(keys)}")
            bad = [line.get("key") for line in lines if line.get("status") != "succeeded"]
            if bad:
                out.append(f"outputs: {rel} rows not succeeded: {bad}")
        return out

    def backup_problems(self) -> list[str]:
        """After in-place damage to state.json: the backup must not have been damaged with it."""
        bak = self.workspace / ".jobrunner" / "state.json.bak"
        if not bak.exists():
            return []
        addresses, why = read_state(bak)
        return [] if addresses is not None else [f"backup-intact: state.json.bak was damaged with state.json ({why})"]


def _around(text: str, needle: str, width: int = 120) -> str:
    i = text.find(needle)
    return text[max(0, i - width): i + len(needle) + width].replace("\n", "⏎")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 90 else text[:87] + "..."
