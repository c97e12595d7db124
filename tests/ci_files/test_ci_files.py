"""The files a team copies into its CI: the composite action's script, the pre-commit hook, the
example workflow. The action's shell step is run for real with bash and the installed CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- jobrunner-plan -->"


def action_step(step_id: str) -> dict:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    return next(s for s in action["runs"]["steps"] if s.get("id") == step_id)


def run_action(tmp_path: Path, command: str, *, output_file: str = "", allowed: str = "0") -> tuple[int, str, str, str]:
    """Run the action's `run` step as GitHub would: bash, inputs in the environment."""
    jobrunner = shutil.which("jobrunner")
    if jobrunner is None:
        pytest.skip("the jobrunner console script is not installed (python -m pip install -e .)")
    gh_output = tmp_path / "github_output"
    gh_output.write_text("")
    env = dict(os.environ, JOBRUNNER_COMMAND=command, JOBRUNNER_OUTPUT_FILE=output_file,
               JOBRUNNER_ALLOWED=allowed, GITHUB_OUTPUT=str(gh_output),
               PATH=f"{Path(jobrunner).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    script = action_step("run")["run"]
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout, proc.stderr, gh_output.read_text()


def test_action_passes_the_exit_code_through_and_fails_on_it(tmp_path):
    code, _out, _err, outputs = run_action(tmp_path, "no-such-command")
    assert code == 1  # a usage error (exit 1, never click's 2, which reads as "changes"), not swallowed
    assert "exit-code=1" in outputs


def test_action_accepts_allowed_exit_codes(tmp_path):
    code, out, _err, outputs = run_action(tmp_path, "no-such-command", allowed="0, 1")
    assert code == 0
    assert "exit-code=1" in outputs
    assert "::error::" not in out


def test_action_writes_stdout_to_the_output_file_and_the_log(tmp_path):
    code, out, _err, outputs = run_action(tmp_path, "--version", output_file="version.txt")
    assert code == 0 and "exit-code=0" in outputs
    written = (tmp_path / "version.txt").read_text()
    assert "jobrunner" in written and written.strip() in out


def test_action_does_not_evaluate_shell_in_the_command(tmp_path):
    code, _out, _err, _outputs = run_action(tmp_path, "no-such-command $(touch pwned) ; touch pwned2")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert code != 0  # the words reach jobrunner as arguments, which rejects them


def test_action_installs_from_its_own_checkout_by_default():
    step = action_step("run")
    action = yaml.safe_load((REPO / "action.yml").read_text())
    install = next(s for s in action["runs"]["steps"] if s.get("name") == "Install jobrunner")
    assert "${JOBRUNNER_ACTION_PATH}[postgres]" in install["run"]
    assert "${{ inputs.command }}" not in step["run"]  # inputs reach the script via env only
    assert set(action["inputs"]) >= {"command", "output-file", "allowed-exit-codes", "working-directory"}
    assert action["outputs"]["exit-code"]["value"] == "${{ steps.run.outputs.exit-code }}"


def test_pre_commit_hook_runs_validate_on_the_workspace():
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "jobrunner-validate"]
    assert hook["entry"] == "jobrunner validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    import re
    pattern = re.compile(hook["files"])
    assert pattern.search("specs/train.yaml") and pattern.search("data/prompts.jsonl")
    assert not pattern.search("README.md")


def test_example_workflow_plans_on_pull_requests_and_applies_the_reviewed_plan():
    wf = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"pull_request", "push"}
    plan, apply = wf["jobs"]["plan"], wf["jobs"]["apply"]
    plan_cmds = [s.get("with", {}).get("command", "") for s in plan["steps"]]
    assert any(c.startswith("validate") for c in plan_cmds)
    plan_cmd = next(c for c in plan_cmds if c.startswith("plan"))
    assert "--out plan.json" in plan_cmd and "--format markdown" in plan_cmd
    upload = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "plan.json" in upload["with"]["path"]
    comment = next(s for s in plan["steps"] if "Post or update" in s.get("name", ""))
    assert MARKER in comment["with"]["script"] and "updateComment" in comment["with"]["script"]
    download = next(s for s in apply["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["name"] == "jobrunner-plan-${{ steps.reviewed.outputs.head-sha }}"
    assert upload["with"]["name"] == "jobrunner-plan-${{ github.event.pull_request.head.sha }}"
    apply_cmds = [s.get("with", {}).get("command", "") for s in apply["steps"]]
    assert "apply plan.json" in apply_cmds
    assert plan["permissions"]["pull-requests"] == "write"
    # Plans may read state through a read-only role; applies write with the full one.
    assert (
        plan["env"]["JOBRUNNER_STATE_URL"] == "${{ secrets.JOBRUNNER_PLAN_STATE_URL || secrets.JOBRUNNER_STATE_URL }}"
    )
    assert apply["env"]["JOBRUNNER_STATE_URL"] == "${{ secrets.JOBRUNNER_STATE_URL }}"
    guard = next(s for s in plan["steps"] if s.get("if") == "env.JOBRUNNER_STATE_URL == ''")
    names = [s.get("name") for s in plan["steps"]]
    assert names.index("Validate") < names.index(guard["name"]) < names.index("Plan")


# --- the sticky-comment script of the example workflow, run with node against a fake GitHub API ---

HARNESS = r"""
const fs = require('fs');
const script = fs.readFileSync(process.argv[2], 'utf8');
const comments = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const calls = [];
const github = {
  rest: { issues: {
    listComments: async (args) => ({ data: comments }),
    updateComment: async (args) => { calls.push(['update', args]); },
    createComment: async (args) => { calls.push(['create', args]); },
  } },
  paginate: async (fn, args) => (await fn(args)).data,
};
const context = { repo: { owner: 'acme', repo: 'models' }, issue: { number: 7 },
                  payload: { pull_request: { head: { sha: 'abcdef1234567890' } } } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('github', 'context', 'core', 'require', 'process', script)(github, context, {}, require, process)
  .then(() => console.log(JSON.stringify(calls)), (e) => { console.error(e); process.exit(1); });
"""


def comment_step_calls(tmp_path: Path, comments: list[dict], *, plan_md: str | None, outcome: str) -> list:
    import json

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the workflow's github-script step cannot be run here")
    wf = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    step = next(s for s in wf["jobs"]["plan"]["steps"] if "Post or update" in s.get("name", ""))
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    if plan_md is not None:
        (tmp_path / "plan.md").write_text(plan_md)
    env = dict(os.environ, PLAN_OUTCOME=outcome, RUN_URL="https://ci.example/run/1")
    proc = subprocess.run([node, "harness.js", "script.js", "comments.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


PLAN_MD = f"{MARKER}\n### jobrunner plan: 1 to create\n| address | action | reason |\n"


def test_comment_is_created_once_then_updated_in_place(tmp_path):
    (call,) = comment_step_calls(tmp_path, [], plan_md=PLAN_MD, outcome="success")
    assert call[0] == "create" and call[1]["issue_number"] == 7
    assert call[1]["body"].startswith(PLAN_MD) and "Plan of abcdef1" in call[1]["body"]
    existing = [
        {"id": 11, "user": {"type": "User"}, "body": f"quoting the bot: {MARKER}"},  # a person's comment
        {"id": 12, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"},
    ]
    (call,) = comment_step_calls(tmp_path, existing, plan_md=PLAN_MD, outcome="success")
    assert call[0] == "update" and call[1]["comment_id"] == 12
    assert "old plan" not in call[1]["body"] and "1 to create" in call[1]["body"]


def test_a_failed_plan_replaces_the_old_plan_in_the_comment(tmp_path):
    existing = [{"id": 12, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"}]
    (call,) = comment_step_calls(tmp_path, existing, plan_md=None, outcome="failure")
    assert call[0] == "update" and call[1]["comment_id"] == 12
    assert call[1]["body"].startswith(MARKER) and "plan failed for abcdef1" in call[1]["body"]
    (call,) = comment_step_calls(tmp_path, existing, plan_md=None, outcome="skipped")
    assert "validate failed" in call[1]["body"]


def test_action_install_step_reuses_an_installed_jobrunner(tmp_path):
    if shutil.which("jobrunner") is None:
        pytest.skip("the jobrunner console script is not installed (python -m pip install -e .)")
    pytest.importorskip("psycopg")
    action = yaml.safe_load((REPO / "action.yml").read_text())
    install = next(s for s in action["runs"]["steps"] if s.get("name") == "Install jobrunner")
    # The step's fallback would `pip install` the action's checkout into the Python running the tests
    # (replacing the developer's editable install); pointing it at a missing checkout makes that
    # fallback fail loudly instead, so the test can only pass through the "already installed" branch.
    env = dict(os.environ, JOBRUNNER_INSTALL="", JOBRUNNER_ACTION_PATH=str(tmp_path / "no-checkout-here"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{Path(shutil.which('jobrunner')).parent}"
                    f"{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-e", "-c", install["run"]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "already installed" in proc.stdout and "jobrunner" in proc.stdout.splitlines()[-1]
