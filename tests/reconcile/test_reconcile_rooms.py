"""The reconciler's seams: the plan carries what apply needs, results are typed, and the report's
readers (exit codes, the summary) stand without the executor."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace as dc_replace
from pathlib import Path

import pytest

from jobrunner.plan_types import Action, Policy
from jobrunner.providers.base import FAILED
from jobrunner.reconcile.report import O_FAILED, O_SKIPPED, OutcomeKind
from jobrunner.state.model import StateDoc
from tests.core import plan_helpers as ph
from tests.reconcile.test_reconcile_executor import (
    VERSION,
    batch_item,
    change,
    run,
    training,
)


def test_every_change_carries_its_resource_policy(tmp_path: Path) -> None:
    res = ph.training(retry={"max_attempts": 3}, timeout="2h", lifecycle={"prevent_cancel": True})
    plan = ph.plan_for([res], tmp_path, StateDoc(lineage="L"))
    [only] = plan.changes
    assert only.action is Action.CREATE
    assert only.policy == Policy(max_attempts=3, prevent_cancel=True, timeout="2h")


def test_apply_retries_as_the_plan_says_not_as_the_manifest_says_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved plan applies what it showed: the resource spec (retry 1) is not read again."""
    from tests.reconcile import test_reconcile_executor as t

    res, job = training(input={"fail": True}, retry=1)
    planned = dc_replace(change(job), policy=Policy(max_attempts=2))
    monkeypatch.setattr(t, "with_policies", lambda changes, resources: changes)  # the plan's policy as it is
    report, doc, provider, _ = run([planned], [res], [job])
    assert provider.creates == 2
    assert doc.addresses["Training/t"].attempts == 2 and doc.addresses["Training/t"].status == FAILED
    assert report.outcomes["Training/t"].outcome is OutcomeKind.FAILED


def test_a_dependent_of_a_failed_job_is_skipped_with_the_final_status_as_reason() -> None:
    up, job = training(input={"fail": True})
    item_res, item = batch_item(up.address, "a", "f" * 64, version=VERSION)
    report, _, _, _ = run([change(job), change(item)], [up, item_res], [job, item])
    assert report.outcomes["Training/t"].outcome == O_FAILED
    skipped = report.outcomes[item.address]
    assert skipped.outcome == O_SKIPPED and skipped.detail == "upstream Training/t did not succeed (failed)"


def test_exit_codes_and_the_summary_do_not_import_the_executor() -> None:
    code = ("import sys\n"
            "from jobrunner.exitcodes import for_apply\n"
            "from jobrunner.reconcile.report import ApplyReport\n"
            "from jobrunner.render.report import apply_report, failure_lines, summary_line\n"
            "from jobrunner.state.model import StateDoc\n"
            "r = ApplyReport()\n"
            "for_apply(r); summary_line('Apply complete', r); failure_lines(r)\n"
            "apply_report(r, StateDoc(lineage='L'), 'Apply complete')\n"
            "print('jobrunner.reconcile.executor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
