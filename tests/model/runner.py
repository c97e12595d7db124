"""The runner of the model-based test: executes a generated step list against the real CLI and the
real local platform, both as separate processes so either can be `kill -9`ed, and runs the checker
after every step.

`run_model(seed, steps)` returns a `RunReport`; when an invariant breaks it raises `ModelFailure`
whose message holds the seed, the numbered step list up to the failing step, the problems and a
one-line command that replays the run. After the last step the faults are turned off and apply is
re-run (up to `FINAL_ROUNDS` times) until it exits 0: the run must converge, then pass the strict
checks.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.model.checker import Checker, Observation, read_state
from tests.model.world import DEFAULT_KINDS, Step, World, generate

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 240.0
FINAL_ROUNDS = 4
PLATFORM_START_S = 30.0

# Fault profiles (a step `faults(profile=...)` sets one; it stays until the next, and survives a
# platform restart). Scheduled knobs where a fault must fire, seeded rates elsewhere.
PROFILES: dict[str, dict[str, Any]] = {
    "errors": {"error_rate": 0.15},
    "drops": {"drop_every_nth_create": 2},
    "drops_random": {"drop_after_create": 0.25},
    "burst429": {"http_429_at": list(range(2, 8)), "retry_after_s": 1},
    "latency": {"latency_jitter_ms": 150},
    "off": {},
}
LIST_LAG_S = 2.0  # for the `list_lag` profile, when the platform has such a knob
# The CLI's lookup window (JOBRUNNER_LOOKUP_WINDOW, seconds a provider's list may lag): above the
# lag the `list_lag` profile injects, below the 10 s default that would dominate every re-run.
LOOKUP_WINDOW_S = "4"


class ModelFailure(AssertionError):
    """An invariant broke; the message says how to reproduce it."""

    def __init__(self, message: str, *, step: int = 0, checks: int = 0, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.step = step  # the failing step (the step count: the final convergence)
        self.checks = checks
        self.problems = problems or []


@dataclass
class StepRecord:
    index: int
    step: Step
    codes: list[int | str]
    seconds: float


@dataclass
class RunReport:
    seed: int
    steps: int
    checks: int = 0
    evaluations: int = 0
    records: list[StepRecord] = field(default_factory=list)
    final_codes: list[int] = field(default_factory=list)
    seconds: float = 0.0


class ServedPlatform:
    """`jobrunner serve` in its own process group (it and its workers die together on kill -9),
    restarted on the same port so the workspace's `jobrunner.yaml` stays right."""

    def __init__(self, data_dir: Path, token: str) -> None:
        self.data_dir = data_dir
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.faults: dict[str, Any] = {}
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": self.token}
        env.pop("JOBRUNNER_LOCAL_FAULTS", None)
        deadline = time.monotonic() + PLATFORM_START_S
        with open(self.data_dir.parent / "serve.out", "ab") as log:
            while True:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(self.data_dir),
                     "--port", str(self.port), "--workers", "2"],
                    env=env, stdout=log, stderr=log, start_new_session=True)
                if self._wait_ready(deadline):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local platform did not start (see {log.name})")
                time.sleep(0.5)  # the port may still be held by the killed one: try again
        if self.faults:
            self.set_faults(self.faults)

    def _wait_ready(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                info = json.loads((self.data_dir / "server.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.port = int(info["port"])
                try:
                    with self.client() as c:
                        if c.get("/_admin/info").status_code == 200:
                            return True
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0)

    def set_faults(self, knobs: dict[str, Any]) -> None:
        self.faults = dict(knobs)
        with self.client() as c:
            c.post("/_admin/faults", json={"reset": True}).raise_for_status()
            if knobs:
                c.post("/_admin/faults", json=knobs).raise_for_status()

    def knob_names(self) -> set[str]:
        with self.client() as c:
            return set(c.get("/_admin/faults").json())


@dataclass
class Done:
    code: int | str  # an exit code, or "killed"
    output: str


class Session:
    """One model run: a workspace, a platform, the step list, the checker."""

    def __init__(self, seed: int, steps: int, kinds: frozenset[str], root: Path, log: Any = None) -> None:
        self.seed = seed
        self.plan = generate(seed, steps, kinds)
        self.kinds = kinds
        self.root = root
        self.ws = root / "ws"
        self.ws.mkdir(parents=True)
        self.platform = ServedPlatform(root / "platform", "jrl_model_" + secrets.token_hex(12))
        self.log = log
        world = self.world = self.plan[0][1]  # the step being run (the checker notes claims in it)
        self.checker = Checker(self.ws, self.platform.data_dir / "platform.db",
                               (*world.sentinels, self.platform.token),
                               frozenset(("echo.yaml", "slow.yaml", "train.yaml", "jobrunner.yaml")))
        self.report = RunReport(seed, steps)

    # --- processes -------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL",
                            "JOBRUNNER_TEST_CRASH_AT", "JOBRUNNER_LOCAL_FAULTS")}
        env.update(JOBRUNNER_LOCAL_TOKEN=self.platform.token, PYTHONPATH=str(REPO),
                   JOBRUNNER_LOOKUP_WINDOW=LOOKUP_WINDOW_S, JOBRUNNER_MARKER_DIR=str(self.root / "markers"), **extra)
        return env

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "jobrunner", *args], cwd=self.ws, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, proc: subprocess.Popen[str], timeout: float = CLI_TIMEOUT_S) -> Done:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            return Done("hung", out + f"\n[model test: killed after {timeout:.0f}s without finishing]")
        return Done("killed" if proc.returncode == -signal.SIGKILL else proc.returncode, out)

    def cli(self, *args: str, **env: str) -> Done:
        done = self.finish(self.spawn(*args, **env))
        self.record(args, env, done)
        return done

    def record(self, args: tuple[str, ...], env: dict[str, str], done: Done) -> None:
        """Every command's full output, in order, in `<run dir>/commands.log` (kept on failure)."""
        with open(self.root / "commands.log", "a", encoding="utf-8") as fh:
            prefix = "".join(f"{k}={v} " for k, v in env.items())
            fh.write(f"\n=== step {len(self.report.records)}: {prefix}jobrunner {' '.join(args)} -> {done.code}\n")
            fh.write(done.output)

    def write_manifests(self, world: World) -> None:
        for name, text in world.files().items():
            path = self.ws / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text, encoding="utf-8")

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> RunReport:
        started = time.monotonic()
        self.platform.start()
        try:
            (self.ws / "jobrunner.yaml").write_text(
                f"providers:\n  local:\n    url: {self.platform.url}\n", encoding="utf-8")
            for index, (step, world) in enumerate(self.plan):
                self.write_manifests(world)
                t0 = time.monotonic()
                obs = Observation()
                self.world = world
                problems = self.execute(step, obs)
                problems += self.checker.check(world, obs)
                codes = list(obs.codes)
                self.report.records.append(StepRecord(index, step, codes, time.monotonic() - t0))
                self._log(f"  step {index:3d} {step}  -> {codes}  ({time.monotonic() - t0:.1f}s)")
                if problems:
                    self.fail(index, problems, obs)
            self.converge()
        finally:
            self.platform.stop()
            self.report.seconds = time.monotonic() - started
            self.report.checks = self.checker.checks
            self.report.evaluations = self.checker.evaluations
        return self.report

    def converge(self) -> None:
        """Faults off, apply until it exits 0; then the strict checks must hold."""
        self.platform.set_faults({})
        world = self.plan[-1][1]
        for _ in range(FINAL_ROUNDS):
            obs = Observation()
            done = self.cli("apply", "--auto-approve")
            self._note(obs, done)
            obs.applied = done.code if isinstance(done.code, int) else None
            problems = self.checker.check(world, obs)
            self.report.final_codes.append(done.code if isinstance(done.code, int) else -1)
            self._log(f"  final apply -> {done.code}")
            if problems:
                self.fail(len(self.plan), problems, obs, final=True)
            if done.code == 0:
                return
        self.fail(len(self.plan), [f"converged: apply did not exit 0 in {FINAL_ROUNDS} runs with faults off "
                                   f"(exit codes {self.report.final_codes}); last output:\n{done.output[-2500:]}"],
                  Observation(), final=True)

    def fail(self, index: int, problems: list[str], obs: Observation, final: bool = False) -> None:
        lines = [f"model test FAILED: seed {self.seed}, "
                 + ("after the final convergence apply" if final else f"at step {index}"),
                 "steps:"]
        for i, (step, _) in enumerate(self.plan[: index + 1]):
            rec = self.report.records[i] if i < len(self.report.records) else None
            lines.append(f"  {i:3d} {step}" + (f"  -> {rec.codes}" if rec else ""))
        lines.append("problems:")
        lines += [f"  - {p}" for p in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  ... and {len(problems) - 20} more")
        extra = sorted(self.kinds - DEFAULT_KINDS)
        env = f"MODEL_STEPS_EXTRA={','.join(extra)} " if extra else ""
        lines.append(
            f"replay: {env}python bench/soak_model.py --seed {self.seed} --steps {len(self.plan)}"
            + (f" --extra {','.join(extra)}" if extra else "")
            + f"   (kept: {self.ws}, every command's output in {self.root / 'commands.log'})"
        )
        tail = "\n".join(o[-1500:] for o in obs.outputs[-2:])
        if tail:
            lines.append("last command output:\n" + tail)
        raise ModelFailure("\n".join(lines), step=index, checks=self.checker.evaluations, problems=problems)

    def _log(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)

    @staticmethod
    def _note(obs: Observation, done: Done) -> None:
        obs.outputs.append(done.output)
        obs.codes.append(done.code)

    # --- the steps ----------------------------------------------------------------------------
    def execute(self, step: Step, obs: Observation) -> list[str]:
        kind = step.kind
        if kind in ("add_rows", "remove_rows", "rename_row", "change_row", "add_slow", "training"):
            return []  # the manifests were written; the next apply acts on them
        handler = getattr(self, f"step_{kind}")
        return handler(step, obs)

    def _apply_done(self, obs: Observation, done: Done, *, expect: tuple[int, ...] = (0, 1, 5)) -> list[str]:
        self._note(obs, done)
        if done.code == "hung":
            return [f"clean-exit: apply did not finish in {CLI_TIMEOUT_S:.0f}s"]
        if isinstance(done.code, int):
            obs.applied = done.code
            if done.code not in expect:
                return [f"clean-exit: apply exited {done.code} (expected one of {expect})"]
            # With every row removed there is nothing to manage: apply says so and exits 1.
            empty = "No manifests found" in done.output and not any(
                (self.ws / name).exists() for name in ("echo.yaml", "slow.yaml", "train.yaml"))
            if done.code == 1 and not self.platform.faults and not empty:
                return ["clean-exit: apply exited 1 with no fault on"]
        return []

    def step_apply(self, step: Step, obs: Observation) -> list[str]:
        done = self.cli("apply", "--auto-approve", "--parallelism", str(step.arg("parallelism", 10)))
        return self._apply_done(obs, done)

    def step_plan(self, step: Step, obs: Observation) -> list[str]:
        done = self.cli("plan", "--detailed-exitcode")
        self._note(obs, done)
        if done.code not in (0, 1, 2, 5) or (done.code == 1 and not self.platform.faults):
            return [f"clean-exit: plan exited {done.code}"]
        return []

    def step_crash_apply(self, step: Step, obs: Observation) -> list[str]:
        spec = f"{step.arg('point')}:{step.arg('n')}"
        done = self.cli("apply", "--auto-approve", JOBRUNNER_TEST_CRASH_AT=spec)
        if done.code == "killed":
            self._note(obs, done)
            return []
        return self._apply_done(obs, done)  # the point was not reached: an ordinary apply

    def step_kill_apply(self, step: Step, obs: Observation) -> list[str]:
        proc = self.spawn("apply", "--auto-approve")
        try:
            proc.wait(timeout=float(step.arg("after_s")))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        done = self.finish(proc)
        self.record(("apply", "--auto-approve"), {"KILL_AFTER_S": str(step.arg("after_s"))}, done)
        if done.code == "killed":
            self._note(obs, done)
            return []
        return self._apply_done(obs, done)

    def step_kill_platform(self, step: Step, obs: Observation) -> list[str]:
        proc = self.spawn("apply", "--auto-approve") if step.arg("during_apply") else None
        time.sleep(float(step.arg("after_s")))
        self.platform.kill()
        time.sleep(0.3)
        self.platform.start()
        if proc is None:
            return []
        # The apply met a vanished platform: any documented outcome, as long as it ends cleanly.
        done = self.finish(proc)
        self.record(("apply", "--auto-approve"), {"PLATFORM_KILLED_AFTER_S": str(step.arg("after_s"))}, done)
        problems = self._apply_done(obs, done, expect=(0, 1, 5, 6))
        obs.applied = None  # a job failed by the restart may not be retried yet: not a quiescent point
        return [p for p in problems if "no fault on" not in p]

    def step_faults(self, step: Step, obs: Observation) -> list[str]:
        profile = step.arg("profile")
        knobs: dict[str, Any]
        if profile == "list_lag":
            # Hook for the lagging-list knob (added by the exactly-once work): used when present.
            lag = sorted(n for n in self.platform.knob_names() if n.startswith("list_lag"))
            knobs = {lag[0]: LIST_LAG_S} if lag else {}
        else:
            knobs = dict(PROFILES[profile])
        if knobs and any(k in knobs for k in ("error_rate", "drop_after_create", "latency_jitter_ms")):
            knobs["seed"] = step.arg("seed")
        self.platform.set_faults(knobs)
        return []

    def step_damage_state(self, step: Step, obs: Observation) -> list[str]:
        """The state file replaced by a damaged copy (a bad copy, a sync tool), then the way back
        that `status` prints, followed to the letter."""
        return self._damage(step, obs, in_place=False)

    def step_damage_inplace(self, step: Step, obs: Observation) -> list[str]:
        """The state file damaged in place, on its own inode (a failing disk, an editor writing in
        place): a backup that shares the inode is damaged with it."""
        return self._damage(step, obs, in_place=True)

    def _damage(self, step: Step, obs: Observation, *, in_place: bool) -> list[str]:
        state = self.ws / ".jobrunner" / "state.json"
        if not state.exists():
            return []
        obs.damaged = True
        # What state holds now is about to be lost: the checker remembers it as claimed, as if it
        # had checked between the step's apply and the damage (crash_recover does both).
        self.checker.note_claims(self.world)
        data = state.read_bytes()
        how = step.arg("how")
        if how == "truncate":
            damaged = data[: max(1, len(data) // 2)]
        elif how == "empty":
            damaged = b""
        else:
            cut = max(0, len(data) // 3)
            damaged = data[:cut] + b"\x00garbage{{{" * 4 + data[cut + 48:]
        if in_place:
            with open(state, "r+b") as fh:
                fh.write(damaged)
                fh.truncate(len(damaged))
        else:
            tmp = state.with_name("model-test-damaged.tmp")
            tmp.write_bytes(damaged)
            os.replace(tmp, state)
        problems = self.checker.backup_problems()
        done = self.cli("status")
        self._note(obs, done)
        if done.code != 1:
            problems.append(f"clean-exit: status on a damaged state exited {done.code}, not 1")
        hint = _recovery_hint(done.output)
        if hint is None:
            problems.append("recovery: a damaged state's error gives no way back (no `cp ... state.json.bak`, "
                            "no `jobrunner state restore-backup`, no `jobrunner state recover`)")
        if problems:
            return problems
        # Follow the hint exactly as a user would: the command it names, or the copy it spells out.
        if hint[0] == "recover":  # no usable backup: move the files aside, then look every job up
            for name in ("state.json", "state.json.bak"):
                path = state.with_name(name)
                if path.exists():
                    os.replace(path, path.with_name(name + ".aside"))
            obs.state_lost = True
            return self._state_recover(obs)
        if hint[0] == "cli":
            restored = self.cli(*hint[1:])
            self._note(obs, restored)
            if restored.code != 0:
                return [f"recovery: `jobrunner {' '.join(hint[1:])}` (the hint) exited {restored.code}"]
        else:
            shutil.copyfile(hint[1], hint[2])
        return []

    def step_lose_state(self, step: Step, obs: Observation) -> list[str]:
        """state.json and its backup both deleted (`rm -rf`, a fresh checkout): commands must refuse
        with the way back, and following it (`jobrunner state recover`) must find the jobs."""
        state = self.ws / ".jobrunner" / "state.json"
        if not state.exists():
            return []
        obs.damaged = obs.state_lost = True
        state.unlink()
        state.with_name("state.json.bak").unlink(missing_ok=True)
        done = self.cli("status")
        self._note(obs, done)
        if done.code != 1 or "jobrunner state recover" not in done.output:
            return [f"recovery: status on a lost state exited {done.code} without naming `jobrunner state recover`"]
        return self._state_recover(obs)

    def _state_recover(self, obs: Observation) -> list[str]:
        recovered = self.cli("state", "recover")
        self._note(obs, recovered)
        if recovered.code == 1 and "--assign-in-order" in recovered.output:
            recovered = self.cli("state", "recover", "--assign-in-order")  # the decision the hint offers
            self._note(obs, recovered)
        if recovered.code != 0:
            return [f"recovery: `jobrunner state recover` (the hint) exited {recovered.code}"]
        return []

    def step_crash_recover(self, step: Step, obs: Observation) -> list[str]:
        """A crash in the middle of creating, then a damaged state file, then the recovery hint
        followed to the letter: the backup may predate the jobs the crashed apply created."""
        problems = self.step_crash_apply(Step("crash_apply", (("point", step.arg("point")), ("n", step.arg("n")))), obs)
        obs.applied = None
        return problems + self._damage(Step("damage_state", (("how", step.arg("how")),)), obs, in_place=False)

    def step_identical_drops(self, step: Step, obs: Observation) -> list[str]:
        """Identical rows created in one apply (parallelism 10) while every 2nd or 3rd create is
        dropped after commit: each lookup must find its own job, never a sibling's."""
        before = dict(self.platform.faults)
        self.platform.set_faults({"drop_every_nth_create": step.arg("drop_every_nth_create")})
        try:
            done = self.cli("apply", "--auto-approve", "--parallelism", "10")
        finally:
            self.platform.set_faults(before)
        return [p for p in self._apply_done(obs, done) if "no fault on" not in p]

    def step_inspect(self, step: Step, obs: Observation) -> list[str]:
        """Every read-only view a user has: each must end cleanly (and the checker scans them all
        for secrets)."""
        problems = []
        addresses = sorted(self.plan[0][1].desired())  # any address; state show/logs of one
        views = [("status",), ("outputs",), ("state", "list"), ("plan", "--format", "json"),
                 ("plan", "--format", "markdown")]
        # What state records now: the snapshot and, after a killed apply, its journal (the
        # snapshot alone may still hold an address that apply has since forgotten).
        addresses_now, _ = read_state(self.ws / ".jobrunner" / "state.json")
        recorded = sorted(addresses_now or {})
        for address in [a for a in recorded if "[" in a][:2] + addresses[:0]:
            views += [("state", "show", address), ("logs", address)]
        for args in views:
            done = self.cli(*args)
            self._note(obs, done)
            # `logs` of an address whose create is still only an intent has no job: a clean error.
            no_job = args[0] == "logs" and done.code == 1 and "has no job" in done.output
            if not isinstance(done.code, int) or done.code not in (0, 1, 2, 5) \
                    or (done.code == 1 and not self.platform.faults and not no_job):
                problems.append(f"clean-exit: `jobrunner {' '.join(args)}` exited {done.code}")
        return problems

    def step_typo(self, step: Step, obs: Observation) -> list[str]:
        path = self.ws / str(step.arg("file"))
        text = path.read_text(encoding="utf-8")
        recorded, _ = read_state(self.ws / ".jobrunner" / "state.json")  # snapshot and journal
        try:
            tracked = recorded is None or any(st.get("file") == path.name for st in recorded.values())
        except AttributeError:
            tracked = True
        path.write_text(text.replace("apiVersion: jobrunner/v1", f"apiVersion: {step.arg('api_version')}", 1),
                        encoding="utf-8")
        try:
            done = self.cli("apply", "--auto-approve")
        finally:
            path.write_text(text, encoding="utf-8")
        self._note(obs, done)
        # A file whose apiVersion is not even `jobrunner/...` is not a manifest; while state tracks
        # no job from it, there is nothing it could remove, and apply rightly goes on without it.
        foreign = not str(step.arg("api_version")).startswith("jobrunner/")
        if done.code == 0 and foreign and not tracked:
            return []
        if done.code != 1:
            return [f"typo: apply with apiVersion {step.arg('api_version')!r} in {path.name} exited {done.code}, "
                    f"not 1 (a manifest that no longer parses is an error, never a removal)"]
        return []


def _recovery_hint(output: str) -> tuple[str, ...] | None:
    """The way back a damaged state's error names: ("cli", args...) or ("cp", source, target)."""
    match = re.search(r"jobrunner (state restore-backup)\b", output)
    if match:
        return ("cli", *match.group(1).split())
    if "jobrunner state recover" in output:
        return ("recover",)
    for line in output.splitlines():
        if "cp " in line and "state.json.bak" in line:
            words = line.split("cp ", 1)[1].replace(";", " ").split()
            if len(words) >= 2:
                return ("cp", words[0], words[1])
    return None


def run_model(seed: int, steps: int, kinds: frozenset[str] = DEFAULT_KINDS, *, keep: bool = False,
              log: Any = None, root: Path | None = None) -> RunReport:
    """One seeded run. The temporary directory is removed on success unless `keep`, kept on failure."""
    base = Path(tempfile.mkdtemp(prefix=f"model-{seed}-", dir=root))
    session = Session(seed, steps, kinds, base, log=log)
    report = session.run()  # raises ModelFailure (the directory is kept for a look)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return report
