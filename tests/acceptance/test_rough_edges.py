"""The rough edges a new user hit, each as that user meets it: the real CLI on the real local platform.

logs of a batch address and of a failed item, outputs of an unknown address, a job stopped by its own
timeout, pluralised and honest summaries (apply, destroy), a tab in YAML, a damaged saved plan, an
import that does not match, and the status table's summary line.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import httpx

from jobrunner.local.faults import DEFAULT_MAX_BODY_BYTES
from tests.acceptance.conftest import Platform, run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def batch(root: Path, name: str, version: str, rows: str, extra: str = "", file: str | None = None) -> None:
    body = (
        textwrap.dedent(f"""\
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: {name}}}
        spec:
          provider: local
          version: {version}
        """)
        + textwrap.indent(textwrap.dedent(extra), "  ")
        + "  inputs:\n"
        + textwrap.indent(textwrap.dedent(rows), "    ")
    )
    (root / (file or f"{name}.yaml")).write_text(body)


def test_logs_of_a_batch_address_and_of_a_failed_item(workspace: Path) -> None:
    batch(workspace, "mix", SLEEP, "- {key: ok, seconds: 0}\n- {key: bad, seconds: 0, fail: true}\n")
    assert run_cli("apply", "--auto-approve").code != 0  # one item failed
    r = run_cli("logs", "PredictionBatch/mix")  # `status` lists it; logs used to say "not in state"
    assert r.code == 0, r.output
    assert (
        "==> PredictionBatch/mix[bad] (failed) <==" in r.stdout
        and "==> PredictionBatch/mix[ok] (succeeded) <==" in r.stdout
    )
    assert r.stdout.count("sleeping 0s") == 2, r.stdout
    assert "-- PredictionBatch/mix[bad]: failed: sleep: failed on request (fail=true)" in r.stderr, r.stderr
    assert "mix[ok]: succeeded" not in r.stderr
    r = run_cli("logs", "PredictionBatch/mix[bad]")  # the failed item's log ends with its error
    assert (
        r.code == 0 and r.stderr.strip() == "-- PredictionBatch/mix[bad]: failed: sleep: failed on request (fail=true)"
    )
    r = run_cli("logs", "--follow", "PredictionBatch/mix")
    assert (
        r.code == 1 and "--follow takes one job" in r.output and "logs --follow 'PredictionBatch/mix[bad]'" in r.output
    )
    r = run_cli("logs", "PredictionBatch/mixx")
    assert (
        r.code == 1
        and "PredictionBatch/mixx: not in state" in r.output
        and "did you mean PredictionBatch/mix" in r.output
    )


def test_outputs_of_an_unknown_address_is_an_error(workspace: Path) -> None:
    batch(workspace, "greet", ECHO, "- {key: a, text: hi}\n")
    assert run_cli("apply", "--auto-approve").code == 0
    r = run_cli("outputs", "PredictionBatch/greeet")
    assert r.code == 1 and "PredictionBatch/greeet: not in state" in r.output, r.output
    assert "did you mean PredictionBatch/greet" in r.output
    r = run_cli("outputs", "PredictionBatch/greet")
    assert r.code == 0 and "PredictionBatch/greet[a]" in r.stdout


def test_a_job_stopped_by_its_timeout_says_so_and_the_summary_counts_it(workspace: Path) -> None:
    batch(workspace, "slow", SLEEP, "- {key: a, seconds: 6}\n", extra="timeout: 1s\n")
    r = run_cli("apply", "--auto-approve")
    assert r.code != 0
    assert "1 canceled" in r.stdout, r.stdout
    assert "PredictionBatch/slow[a]: canceled: its timeout of 1s (spec.timeout) ran out" in r.stderr, r.stderr
    assert "canceled: canceled" not in r.output


def test_apply_counts_the_jobs_it_cancels_and_destroy_counts_only_what_it_did(workspace: Path) -> None:
    batch(workspace, "nap", SLEEP, "- {key: a, seconds: 30}\n- {key: b, seconds: 30}\n")
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    batch(workspace, "nap", SLEEP, "- {key: a, seconds: 30}\n")  # b is dropped: apply cancels it
    r = run_cli("apply", "--auto-approve", "--no-wait")
    assert r.code == 0, r.output
    assert "1 canceled" in r.stdout and "1 forgotten" in r.stdout, r.stdout
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output
    summary = next(line for line in r.stdout.splitlines() if line.startswith("Destroy"))
    assert summary == "Destroy complete: 1 canceled, 1 forgotten.", summary


def test_a_create_refused_for_each_item_pluralises_errors(workspace: Path, platform: Platform) -> None:
    batch(workspace, "big", ECHO, "- {key: a, text: hello}\n")
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.token}"}) as admin:
        admin.post("/_admin/faults", json={"max_body_bytes": 60}).raise_for_status()  # creates are longer
        try:
            one = run_cli("apply", "--auto-approve")
            batch(workspace, "big", ECHO, "- {key: a, text: hello}\n- {key: b, text: hello}\n")
            two = run_cli("apply", "--auto-approve")
        finally:
            admin.post("/_admin/faults", json={"max_body_bytes": DEFAULT_MAX_BODY_BYTES}).raise_for_status()
    assert one.code != 0 and ", 1 error." in one.stdout and "1 errors" not in one.stdout, one.stdout
    assert two.code != 0 and ", 2 errors." in two.stdout, two.stdout


def test_a_tab_in_yaml_says_use_spaces(workspace: Path) -> None:
    (workspace / "tab.yaml").write_text("apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata:\n\tname: x\n")
    r = run_cli("validate", "tab.yaml")
    assert r.code == 1
    assert "tab.yaml:4:1:" in r.output and "a tab in the indentation" in r.output and "use spaces" in r.output, r.output
    assert "cannot start any token" not in r.output


def test_a_damaged_saved_plan_is_reported_as_one(workspace: Path) -> None:
    batch(workspace, "greet", ECHO, "- {key: a, text: hi}\n")
    assert run_cli("plan", "--out", "release.plan").code == 0
    text = (workspace / "release.plan").read_text()
    for name, damaged in (("release.plan", text[: len(text) // 2]), ("plan.json", text[:-3])):
        (workspace / name).write_text(damaged)
        r = run_cli("apply", name)
        assert r.code == 1 and "Traceback" not in r.output, r.output
        assert f"{name}: this saved plan is damaged: it is not valid JSON at line" in r.output, r.output
        assert "invalid YAML" not in r.output and f"jobrunner plan --out {name}" in r.output


def test_an_import_that_does_not_match_says_what_differs(workspace: Path) -> None:
    batch(workspace, "greet", ECHO, "- {key: a, text: hi, n: 1}\n")
    assert run_cli("apply", "--auto-approve").code == 0
    import json

    state = json.loads((workspace / ".jobrunner" / "state.json").read_text())
    remote_id = state["addresses"]["PredictionBatch/greet[a]"]["remote_id"]
    batch(workspace, "other", ECHO, "- {key: a, text: bye, n: 1, extra: x}\n")
    r = run_cli("import", "PredictionBatch/other[a]", remote_id)
    assert r.code == 1, r.output
    assert (
        f"remote job {remote_id} does not match the manifest: "
        "input.text differs; input.extra is missing on the remote job"
    ) in r.output, r.output
    assert "bye" not in r.output and "model/version/input differ" not in r.output


def test_status_ends_with_a_summary_line(workspace: Path) -> None:
    rows = "".join(f"- {{key: k{i}, text: t{i}}}\n" for i in range(30))
    batch(workspace, "many", ECHO, rows)
    batch(workspace, "bad", SLEEP, "- {key: x, seconds: 0, fail: true}\n")
    run_cli("apply", "--auto-approve")
    for args in (["status"], ["status", "--no-refresh"]):
        r = run_cli(*args)
        assert r.code == 0
        assert r.stdout.rstrip().splitlines()[-1] == "31 tracked: 30 succeeded, 1 failed.", r.stdout[-300:]


def test_a_mistyped_http_transport_variable_stops_before_any_request(workspace: Path, platform: Platform,
                                                                     monkeypatch) -> None:
    """`JOBRUNNER_HTTP_TRANSPORT=htpx` meant to turn the lean transport off: ignored, the apply
    would run on the transport the user wanted gone. It is named instead, nothing is created."""
    batch(workspace, "quick", ECHO, "- {key: a, prompt: hi}\n")
    monkeypatch.setenv("JOBRUNNER_HTTP_TRANSPORT", "htpx")
    with platform.client() as c:
        before = len(c.get("/v1/predictions").json()["results"])
    r = run_cli("apply", "--auto-approve")
    assert r.code == 1, r.output
    assert "JOBRUNNER_HTTP_TRANSPORT='htpx' is not a transport jobrunner knows" in r.stderr
    assert "lean, httpx" in r.stderr and "Traceback" not in r.output
    with platform.client() as c:
        assert len(c.get("/v1/predictions").json()["results"]) == before
    for value in ("HTTPX", "lean", ""):  # the escape hatch, either spelling of the default
        monkeypatch.setenv("JOBRUNNER_HTTP_TRANSPORT", value)
        r = run_cli("plan", "--detailed-exitcode")
        assert r.code == 2, (value, r.output)
