"""The model-based adversarial test in CI: a short budget of seeded runs, plus the checker's own tests
and the regressions the model test found.

Budget: `MODEL_CI_SEEDS` (default `1,2,3`) × `MODEL_CI_STEPS` (default 20) steps, a minute or two on
a quiet machine. Long runs: `python bench/soak_model.py --steps N --seed S --seeds K`. Every step
kind runs by default, including those that found bugs since fixed (`typo`, `crash_recover`,
`identical_drops`, `damage_inplace`, `damage_state`, and the flag `identical_rows`); a kind that
reproduces a known, unfixed bug goes into `EXTRA_KINDS` (opt-in with `MODEL_STEPS_EXTRA`) until
its fix lands (docs/reliability.md, "The model-based test").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model.checker import Checker, Observation
from tests.model.runner import ModelFailure, run_model
from tests.model.world import DEFAULT_KINDS, EXTRA_KINDS, Row, World, generate, kinds_from_env
from tests.reliability.harness import ECHO, Platform, clean_env, make_workspace, run_process, serve_platform

CI_SEEDS = [int(s) for s in os.environ.get("MODEL_CI_SEEDS", "1,2,3").split(",") if s.strip()]
CI_STEPS = int(os.environ.get("MODEL_CI_STEPS", "20"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_model_based_run_holds_every_invariant(seed: int, tmp_path: Path) -> None:
    kinds = kinds_from_env(os.environ.get("MODEL_STEPS_EXTRA"))
    try:
        report = run_model(seed, CI_STEPS, kinds, root=tmp_path)
    except ModelFailure as exc:
        pytest.fail(str(exc), pytrace=False)
    assert len(report.records) == CI_STEPS and report.checks >= CI_STEPS
    assert report.final_codes[-1] == 0


@pytest.mark.slow  # runs the soak script
def test_soak_script_runs_and_prints_its_table() -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "bench/soak_model.py", "--seed", "9", "--steps", "4", "--quiet"],
                          cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 seed(s), 4 step(s)" in proc.stdout and "0 failure(s)" in proc.stdout, proc.stdout


# --- the generator ----------------------------------------------------------------------------


def test_a_seed_names_one_exact_step_list() -> None:
    first = [str(s) for s, _ in generate(42, 60)]
    assert first == [str(s) for s, _ in generate(42, 60)]
    assert first != [str(s) for s, _ in generate(43, 60)]
    kinds = {s.split("(")[0] for s in first}
    assert {"apply", "add_rows", "crash_apply"} <= kinds and not kinds & EXTRA_KINDS


def test_every_seed_draws_its_steps() -> None:
    """The generator never fails to draw: seed 1420 once drew a `typo` with every manifest file
    emptied (all rows removed) and crashed the soak before it ran."""
    for seed in range(1401, 1421):
        assert len(generate(seed, 100)) == 100


def test_every_kind_runs_by_default_and_extra_kinds_are_opt_in() -> None:
    assert kinds_from_env("") == DEFAULT_KINDS
    # The kinds that found the trust bugs of this round run in CI now that those are fixed.
    assert {"typo", "crash_recover", "identical_drops", "damage_inplace", "damage_state",
            "identical_rows"} <= DEFAULT_KINDS
    assert "typo" in kinds_from_env("typo") and kinds_from_env("all") >= EXTRA_KINDS
    with pytest.raises(ValueError):
        kinds_from_env("no_such_kind")


# --- the checker catches what it claims to ------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with serve_platform(tmp_path_factory.mktemp("model-platform"), workers=1) as p:
        yield p


def _one_row_world(text: str) -> World:
    world = World(sentinels=("SENTINEL-model-checker-aa", "SENTINEL-model-checker-bb"))
    world.echo = [Row("a", {"text": text, "n": 1})]
    return world


def _applied(platform: Platform, ws: Path, world: World) -> Checker:
    for name, text in world.files().items():
        if text is not None:
            (ws / name).write_text(text)
    r = run_process(["apply", "--auto-approve"], ws, clean_env(platform))
    assert r.code == 0, r.output
    checker = Checker(ws, platform.data_dir / "platform.db", (*world.sentinels, platform.token),
                      frozenset(("echo.yaml", "jobrunner.yaml")))
    # The platform is shared by this module's tests: claim the jobs other tests left behind.
    for rid in list(_other_jobs(platform, ws)):
        checker.claims[rid] = ("elsewhere", 0)
    return checker


def _other_jobs(platform: Platform, ws: Path) -> set[str]:
    mine = {h["remote_id"] for st in json.loads((ws / ".jobrunner/state.json").read_text())["addresses"].values()
            for h in st.get("history") or []}
    return {j["id"] for j in platform.jobs("predictions")} - mine


def test_checker_passes_a_converged_workspace_and_flags_an_untracked_job(platform: Platform, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", platform)
    world = _one_row_world("checker one")
    checker = _applied(platform, ws, world)
    assert checker.check(world, Observation(applied=0)) == []
    with platform.client() as c:  # a job nobody recorded: what a duplicate or a lost create leaves
        c.post("/v1/predictions", json={"version": ECHO, "input": {"text": "stray", "n": 9}}).raise_for_status()
    problems = checker.check(world, Observation(applied=0))
    assert any(p.startswith("lost:") and "never was" in p for p in problems), problems
    assert checker.check(world, Observation(applied=None)) == []  # not quiescent: in flight is allowed


def test_checker_flags_a_shared_remote_id_a_dropped_address_and_a_leaked_secret(platform: Platform,
                                                                                   tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", platform)
    world = _one_row_world("checker two")
    world.echo.append(Row("b", {"text": "checker two b", "n": 2}))
    checker = _applied(platform, ws, world)
    assert checker.check(world, Observation(applied=0)) == []
    path = ws / ".jobrunner" / "state.json"
    doc = json.loads(path.read_text())
    a, b = doc["addresses"]["PredictionBatch/echo[a]"], doc["addresses"]["PredictionBatch/echo[b]"]
    b["history"].append(dict(a["history"][0]))  # b also claims a's job: the swapped-jobs bug
    path.write_text(json.dumps(doc))
    assert any(p.startswith("shared-id:") for p in checker.check(world, Observation()))
    del doc["addresses"]["PredictionBatch/echo[a]"]
    path.write_text(json.dumps(doc))
    assert any(p.startswith("not-forgotten:") for p in checker.check(world, Observation()))
    (ws / "out" / "leak.txt").write_text(f"oops {world.sentinels[0]}")
    assert any(p.startswith("secrets:") and "out/leak.txt" in p for p in checker.check(world, Observation()))
    assert any(p.startswith("secrets:") for p in checker._outputs_clean(Observation(outputs=[platform.token])))


# --- regressions the model test found -----------------------------------------------------------


def _echo_batch(ws: Path, keys: list[str]) -> None:
    rows = "".join(f"    - {{key: {k}, text: out-{k}}}\n" for k in keys)
    (ws / "echo.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  output_file: out/echo.jsonl\n  inputs:\n{rows}")


def _keys(ws: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (ws / "out" / "echo.jsonl").read_text().splitlines()]


@pytest.mark.slow  # a kill case
def test_output_file_drops_removed_rows_and_is_completed_after_a_kill_before_writing(platform: Platform,
                                                                                      tmp_path: Path) -> None:
    """Found by the model test (seeds 3, 4, 6, 7 on 40 steps): the output file was rewritten only
    when the batch created or waited on something, so removing a row left it in the file, and a kill
    after the jobs finished but before the file was written left the file without them for good."""
    ws = make_workspace(tmp_path / "ws", platform)
    env = clean_env(platform)
    _echo_batch(ws, ["a", "b", "c"])
    assert run_process(["apply", "--auto-approve"], ws, env).code == 0
    _echo_batch(ws, ["a", "c"])
    r = run_process(["apply", "--auto-approve"], ws, env)
    assert r.code == 0, r.output
    assert _keys(ws) == ["a", "c"]
    _echo_batch(ws, ["a", "c", "d"])
    r = run_process(["apply", "--auto-approve"], ws, {**env, "JOBRUNNER_TEST_CRASH_AT": "outputs.before_write"})
    assert r.code == -9, r.output
    # d's row was appended as d ended (after the rows the run left alone); the end-of-run write never ran.
    assert _keys(ws) == ["a", "c", "d"]
    out = ws / "out" / "echo.jsonl"  # as if killed before that append: the next apply must complete it
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:2]))
    assert _keys(ws) == ["a", "c"]
    r = run_process(["apply", "--auto-approve"], ws, env)
    assert r.code == 0, r.output
    assert _keys(ws) == ["a", "c", "d"]
