"""The estimator: durations from history, then hints; hardware and prices; unknown stays unknown;
wall clock under parallelism and rate limits; totals; the budget policy; the renderers' cost table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import ConfigError, PolicyError
from jobrunner.estimate.estimator import EstimateContext, context_for, estimate_plan
from jobrunner.estimate.model import Basis
from jobrunner.estimate.policy import BudgetPolicy, enforce
from jobrunner.estimate.prices import LIST_PRICES, PRICES_AS_OF, PriceTable
from jobrunner.exitcodes import ExitCode, for_error
from jobrunner.plan_types import CREATE, UPDATE, Action, Plan, PlannedChange
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.resources import JOB_DEPLOYMENT, DesiredJob, Resource
from jobrunner.spec import expand
from jobrunner.state.model import StateDoc
from jobrunner.workspace import WorkspaceConfig, load_config
from tests.core.plan_helpers import ECHO, FILE, batch, plan_for, record, training

OTHER = "b" * 64


def rbatch(name: str = "eval", n: int = 2, version: str = ECHO, **spec: Any) -> Resource:
    """A Replicate batch of `n` rows on acme/echo:`version`."""
    return batch(name, provider="replicate", version=f"acme/echo:{version}",
                 inputs=[{"key": f"k{i}", "prompt": f"p{i}"} for i in range(n)], **spec)


def rmodel(hardware: str = "gpu-t4") -> Resource:
    return Resource("Model", "echo", {"provider": "replicate", "owner": "acme", "name": "echo", "visibility": "private",
                                      "hardware": hardware}, FILE, 40)


def history(tmp_path: Path, doc: StateDoc, res: Resource, seconds: list[float]) -> None:
    """Record one succeeded item per run time, as apply does (outputs.metrics.predict_time)."""
    jobs = expand([res], tmp_path, state=doc)
    for job, secs in zip(jobs, seconds, strict=False):
        record(doc, job, res, outputs={"output": "x", "metrics": {"predict_time": secs, "total_time": secs + 1}})


def estimated(resources: list[Resource], tmp_path: Path, doc: StateDoc | None = None,
              ctx: EstimateContext | None = None) -> Plan:
    doc = doc or StateDoc(lineage="L")
    plan = plan_for(resources, tmp_path, doc)
    plan.estimate = estimate_plan(plan.changes, doc, resources, ctx or context_for(WorkspaceConfig()))
    return plan


# --- durations: history first, then the hint, else unknown ------------------------------------


def test_measured_run_times_of_the_same_version_give_the_median(tmp_path: Path) -> None:
    doc = StateDoc(lineage="L")
    history(tmp_path, doc, rbatch("old", n=4), [2.0, 4.0, 6.0, 100.0])
    plan = estimated([rmodel(), rbatch("new", n=3, estimate={"duration": "1h"})], tmp_path, doc)
    est = plan.estimate.changes["PredictionBatch/new[k0]"]
    assert est.basis is Basis.MEASURED and est.seconds == 5.0  # history wins over the hint
    assert est.duration_source == f"median of 4 runs of version {ECHO[:12]} in state"
    assert est.hardware == "gpu-t4" and est.hardware_source == "Model/echo hardware"
    assert est.usd == pytest.approx(5.0 * LIST_PRICES["gpu-t4"])


def test_runs_of_another_version_or_not_succeeded_are_not_history(tmp_path: Path) -> None:
    doc = StateDoc(lineage="L")
    history(tmp_path, doc, rbatch("old", n=2, version=OTHER), [3.0, 3.0])
    failed = expand([rbatch("bad", n=1)], tmp_path, state=doc)[0]
    record(doc, failed, rbatch("bad", n=1), status="failed", outputs={"metrics": {"predict_time": 9.0}})
    est = estimated([rmodel(), rbatch("new", n=1)], tmp_path, doc).estimate.changes["PredictionBatch/new[k0]"]
    assert est.seconds is None and est.basis is Basis.UNKNOWN and est.usd is None
    assert est.duration_source == "unknown: no measured run of this version in state and no estimate.duration"


def test_hint_gives_duration_and_hardware_with_where_they_were_written(tmp_path: Path) -> None:
    res = rbatch(n=2, estimate={"duration": "30s", "hardware": "gpu-a100-large"})
    est = estimated([rmodel("cpu"), res], tmp_path).estimate.changes["PredictionBatch/eval[k1]"]
    assert est.basis is Basis.HINT and est.seconds == 30.0
    assert est.duration_source == f"estimate.duration ({FILE}:20)"
    assert est.hardware == "gpu-a100-large" and est.hardware_source == f"estimate.hardware ({FILE}:20)"
    assert est.usd == pytest.approx(30 * LIST_PRICES["gpu-a100-large"])
    assert f"list prices as of {PRICES_AS_OF}" in est.cost_source


def test_missing_data_is_unknown_never_zero(tmp_path: Path) -> None:
    plan = estimated([rbatch(n=3)], tmp_path)  # no history, no hint, no declared Model
    est = plan.estimate.changes["PredictionBatch/eval[k0]"]
    assert (est.seconds, est.hardware, est.usd) == (None, None, None)
    total = plan.estimate.total
    assert total.unknown_cost == 3 and total.unknown_duration == 3 and total.wall_seconds is None
    text = plan_text.render(plan, color=False)
    assert "[duration unknown, cost unknown]" in text and "$0.00" not in text
    assert "unknown (3 jobs)" in text
    doc = json.loads(plan_json.render(plan))
    change = next(c for c in doc["changes"] if c["address"] == "PredictionBatch/eval[k0]")
    assert change["estimate"]["usd"] is None and change["estimate"]["seconds"] is None
    assert doc["estimate"]["total"]["unknown_cost"] == 3 and doc["estimate"]["total"]["wall_seconds"] is None


def test_a_duration_without_a_price_is_unknown_cost_saying_how_to_price_it(tmp_path: Path) -> None:
    res = rbatch(n=1, estimate={"duration": "10s", "hardware": "gpu-imaginary"})
    est = estimated([res], tmp_path).estimate.changes["PredictionBatch/eval[k0]"]
    assert est.seconds == 10.0 and est.usd is None and "`prices:` in jobrunner.yaml" in est.cost_source


def test_prices_from_jobrunner_yaml_override_the_table(tmp_path: Path) -> None:
    ctx = EstimateContext(prices=PriceTable({"gpu-t4": 0.01}))
    res = rbatch(n=2, estimate={"duration": "10s"})
    plan = estimated([rmodel(), res], tmp_path, ctx=ctx)
    est = plan.estimate.changes["PredictionBatch/eval[k0]"]
    assert est.usd == pytest.approx(0.1) and "jobrunner.yaml prices" in est.cost_source
    assert plan.estimate.total.usd == pytest.approx(0.2)


def test_local_platform_is_free_but_still_gets_durations(tmp_path: Path) -> None:
    doc = StateDoc(lineage="L")
    history(tmp_path, doc, batch("old"), [0.5, 1.5])
    plan = estimated([batch("new", inputs=[{"key": "z", "prompt": "Z"}]), training()], tmp_path, doc)
    item = plan.estimate.changes["PredictionBatch/new[z]"]
    assert item.seconds == 1.0 and item.usd == 0.0 and item.hardware == "local"
    train = plan.estimate.changes["Training/poems"]
    assert train.seconds is None and train.usd == 0.0  # free whatever it takes: a known zero


# --- wall clock ---------------------------------------------------------------------------------


def test_wall_clock_is_bounded_by_the_create_rate_limit(tmp_path: Path) -> None:
    res = rbatch(n=1200, estimate={"duration": "0.5s", "hardware": "cpu"})
    plan = estimated([res], tmp_path, ctx=context_for(WorkspaceConfig(parallelism=100)))
    # compute: ceil(1200/100) * 0.5 s = 6 s; Replicate's 600 prediction creates/min: 1200/600 min = 120 s
    assert plan.estimate.resources[0].wall_seconds == pytest.approx(120.0)
    assert plan.estimate.total.wall_seconds == pytest.approx(120.0)


def test_wall_clock_is_bounded_by_parallelism(tmp_path: Path) -> None:
    res = rbatch(n=1200, estimate={"duration": "10s", "hardware": "cpu"})
    plan = estimated([res], tmp_path, ctx=context_for(WorkspaceConfig(parallelism=10)))
    assert plan.estimate.resources[0].wall_seconds == pytest.approx(120 * 10.0)
    assert plan.estimate.resources[0].usd == pytest.approx(1200 * 10 * LIST_PRICES["cpu"])


def test_configured_rate_limits_count(tmp_path: Path) -> None:
    res = rbatch(n=60, estimate={"duration": "1s", "hardware": "cpu"})
    cfg = WorkspaceConfig(parallelism=60, providers={"replicate": {"rate_limits": {"create_per_minute": 6}}})
    plan = estimated([res], tmp_path, ctx=context_for(cfg))
    assert plan.estimate.total.wall_seconds == pytest.approx(600.0)  # 60 creates at 6/min


def test_plan_wall_clock_follows_the_dependency_chain(tmp_path: Path) -> None:
    t = training(estimate={"duration": "10m"})
    b = batch("eval", version="${Training.poems.output.version}", estimate={"duration": "30s"},
              inputs=[{"key": f"k{i}", "prompt": "x"} for i in range(4)])
    plan = estimated([t, b], tmp_path)
    assert plan.estimate.total.wall_seconds == pytest.approx(600 + 30)
    assert [p.provider for p in plan.estimate.providers] == ["local"]


def test_any_change_with_a_desired_job_is_estimated_generically(tmp_path: Path) -> None:
    """An in-place `update` (deployments) goes through the same path as create."""
    res = Resource("Deployment", "d", {"provider": "replicate", "estimate": {"duration": "2m", "hardware": "gpu-l40s"}},
                   FILE, 5)
    job = DesiredJob(address="Deployment/d", resource_address="Deployment/d", job_kind=JOB_DEPLOYMENT,
                     provider="replicate", file=FILE, request={}, fingerprint="f")
    est = estimate_plan([PlannedChange("Deployment/d", UPDATE, "max_instances: 1 -> 3", job, None)],
                        StateDoc(), [res])
    assert est.changes["Deployment/d"].usd == pytest.approx(120 * LIST_PRICES["gpu-l40s"])
    assert est.creates == 0  # an update creates no job


def test_an_update_in_place_without_a_hint_runs_no_job_rather_than_one_of_unknown_cost() -> None:
    res = Resource("Deployment", "d", {"provider": "replicate", "hardware": "gpu-l40s"}, FILE, 5)
    job = DesiredJob(address="Deployment/d", resource_address="Deployment/d", job_kind=JOB_DEPLOYMENT,
                     provider="replicate", file=FILE, request={}, fingerprint="f")
    update = PlannedChange("Deployment/d", UPDATE, "max_instances (1 -> 3) changed: updated in place", job, None)
    est = estimate_plan([update], StateDoc(), [res])
    e = est.changes["Deployment/d"]
    assert e.basis is Basis.NO_JOB and e.usd == 0.0 and "runs no job" in e.duration_source
    (row,) = est.resources
    assert (row.jobs, row.unknown_cost, row.unknown_duration) == (0, 0, 0) and est.total.usd == 0.0
    plan = Plan(changes=[update], estimate=est)
    assert "[runs no job]" in plan_text.render(plan, color=False)
    assert json.loads(plan_json.render(plan))["changes"][0]["estimate"]["basis"] == "no_job"
    # A budget does not refuse it as being of unknown cost.
    assert not enforce(est, BudgetPolicy(max_cost_per_apply=1.0), allow=False)
    created = estimate_plan([PlannedChange("Deployment/d", CREATE, "new deployment", job, None)], StateDoc(), [res])
    assert created.changes["Deployment/d"].basis is Basis.UNKNOWN  # creating one is not free of doubt


def deployment_change(action: Action, provider: str = "replicate", **request: Any) -> tuple[PlannedChange, Resource]:
    res = Resource("Deployment", "api", {"provider": provider, **request}, FILE, 5)
    job = DesiredJob(address="Deployment/api", resource_address="Deployment/api", job_kind=JOB_DEPLOYMENT,
                     provider=provider, file=FILE, request=dict(request), fingerprint="f")
    return PlannedChange("Deployment/api", action, "new deployment", job, None), res


@pytest.mark.parametrize("action", [CREATE, UPDATE])
def test_a_deployment_created_or_changed_shows_its_hourly_serving_cost_apart(action: Action) -> None:
    """min_instances kept running while idle is the floor, max_instances the ceiling; per hour,
    never in the one-off totals nor against a budget (it is billed for as long as it exists)."""
    change, res = deployment_change(action, hardware="gpu-t4", min_instances=1, max_instances=3,
                                    model="acme/echo", version=ECHO)
    est = estimate_plan([change], StateDoc(), [res])
    (sv,) = est.serving
    hourly = LIST_PRICES["gpu-t4"] * 3600
    assert (sv.resource, sv.min_instances, sv.max_instances, sv.hardware) == ("Deployment/api", 1, 3, "gpu-t4")
    assert sv.usd_per_hour_min == pytest.approx(hourly) and sv.usd_per_hour_max == pytest.approx(3 * hourly)
    assert sv.source.startswith(f"gpu-t4 at ${LIST_PRICES['gpu-t4']:g}/s (list prices as of {PRICES_AS_OF}")
    assert est.total.usd == 0.0
    if action == UPDATE:  # the serving cost is not what a budget of one apply counts
        assert not enforce(est, BudgetPolicy(max_cost_per_apply=0.01), allow=False)
    plan = Plan(changes=[change], estimate=est)
    text = plan_text.render(plan, color=False)
    line = next(x for x in text.splitlines() if x.startswith("  Deployment/api  gpu-t4 x 1-3 instances"))
    assert f"${hourly:,.2f}/h idle, up to ${3 * hourly:,.2f}/h" in line
    assert "not in the totals" in text
    (row,) = json.loads(plan_json.render(plan))["estimate"]["serving"]
    assert row == {"resource": "Deployment/api", "provider": "replicate", "min_instances": 1, "max_instances": 3,
                   "hardware": "gpu-t4", "usd_per_hour_min": pytest.approx(hourly),
                   "usd_per_hour_max": pytest.approx(3 * hourly), "source": sv.source}
    md = plan_markdown.render(plan)
    assert f"| `Deployment/api` | gpu-t4 x 1-3 instances | ${hourly:,.2f}/h idle, up to ${3 * hourly:,.2f}/h |" in md


def test_serving_cost_unknown_says_why_never_zero() -> None:
    change, res = deployment_change(CREATE, hardware="gpu-made-up", min_instances=0, max_instances=2)
    (sv,) = estimate_plan([change], StateDoc(), [res]).serving
    assert sv.usd_per_hour_min is None and sv.usd_per_hour_max is None
    assert sv.source == "unknown: no price for hardware 'gpu-made-up' (add it under `prices:` in jobrunner.yaml)"
    change, res = deployment_change(CREATE, provider="emissary", server_type="a10")
    (sv,) = estimate_plan([change], StateDoc(), [res]).serving
    assert sv.usd_per_hour_max is None and sv.source == "not estimated: Emissary reports no instance counts to price"
    plan = Plan(changes=[change], estimate=estimate_plan([change], StateDoc(), [res]))
    assert "? x ?-? instances" not in plan_text.render(plan, color=False)  # hardware unknown is said so
    assert "unknown hardware x ?-? instances  unknown" in plan_text.render(plan, color=False)
    change, res = deployment_change(CREATE, provider="local", hardware="cpu", min_instances=0, max_instances=1)
    (sv,) = estimate_plan([change], StateDoc(), [res]).serving
    assert (sv.hardware, sv.usd_per_hour_min, sv.usd_per_hour_max) == ("local", 0.0, 0.0)
    assert sv.source.startswith("local: free")


# --- policy -------------------------------------------------------------------------------------


def test_policy_refuses_too_many_creates_with_the_numbers(tmp_path: Path) -> None:
    plan = estimated([batch(inputs=[{"key": f"k{i}", "prompt": "x"} for i in range(5)])], tmp_path)
    with pytest.raises(PolicyError) as err:
        enforce(plan.estimate, BudgetPolicy(max_creates_per_apply=4), allow=False)
    assert "creates 5 jobs; policy.max_creates_per_apply is 4" in err.value.message
    assert "--allow-over-budget" in (err.value.hint or "")
    code = for_error(err.value)
    assert code == ExitCode.ERROR and int(code) == 1


def test_policy_refuses_cost_over_the_limit_and_allows_with_the_flag(tmp_path: Path) -> None:
    res = rbatch(n=100, estimate={"duration": "60s", "hardware": "gpu-a100-large"})  # 100 * 60 * 0.0014 = $8.40
    plan = estimated([res], tmp_path)
    with pytest.raises(PolicyError, match=r"estimated cost is \$8\.40; policy.max_cost_per_apply is \$5\.00"):
        enforce(plan.estimate, BudgetPolicy(max_cost_per_apply=5), allow=False)
    found = enforce(plan.estimate, BudgetPolicy(max_cost_per_apply=5), allow=True)
    assert found and plan.estimate.allow_over_budget and plan.estimate.over_budget == found
    assert json.loads(plan_json.render(plan))["estimate"]["allow_over_budget"] is True
    assert "Over budget, allowed by --allow-over-budget:" in plan_text.render(plan, color=False)
    assert enforce(plan.estimate, BudgetPolicy(max_cost_per_apply=10), allow=False) == []


def test_unknown_cost_against_a_cost_limit_is_refused_naming_the_resources(tmp_path: Path) -> None:
    plan = estimated([rbatch("a", n=3), rbatch("b", n=1, estimate={"duration": "1s", "hardware": "cpu"})], tmp_path)
    with pytest.raises(PolicyError) as err:
        enforce(plan.estimate, BudgetPolicy(max_cost_per_apply=1000), allow=False)
    assert "PredictionBatch/a (3 jobs) is unknown" in err.value.message
    assert "PredictionBatch/b" not in err.value.message
    assert "estimate: {duration: 30s, hardware: gpu-t4}" in err.value.message
    # A creates-only policy does not care about cost.
    assert enforce(plan.estimate, BudgetPolicy(max_creates_per_apply=10), allow=False) == []


# --- config and renderers ---------------------------------------------------------------------


def test_prices_and_policy_are_read_from_jobrunner_yaml(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text(
        "prices:\n  gpu-t4: 0.0003\n  mine: 0\npolicy:\n  max_cost_per_apply: 50\n  max_creates_per_apply: 1000\n")
    cfg = load_config(tmp_path)
    assert cfg.prices == {"gpu-t4": 0.0003, "mine": 0.0}
    assert (cfg.max_cost_per_apply, cfg.max_creates_per_apply) == (50.0, 1000)


@pytest.mark.parametrize("text, where", [
    ("prices:\n  gpu-t4: cheap\n", "jobrunner.yaml:2:3: $.prices.gpu-t4"),
    ("policy:\n  max_cost: 5\n", "jobrunner.yaml:2:3: $.policy.max_cost"),
    ("policy:\n  max_creates_per_apply: 2.5\n", "jobrunner.yaml:2:3: $.policy.max_creates_per_apply"),
    ("policy:\n  max_cost_per_apply: -1\n", "jobrunner.yaml:2:3: $.policy.max_cost_per_apply"),
])
def test_bad_prices_or_policy_point_at_the_line(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "jobrunner.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert err.value.message.startswith(where), err.value.message


def test_markdown_shows_the_cost_table_first_and_stays_small(tmp_path: Path) -> None:
    resources = [rmodel()] + [rbatch(f"b{i}", n=50, estimate={"duration": "2s"}) for i in range(200)]
    plan = estimated(resources, tmp_path)
    text = plan_markdown.render(plan)
    assert len(text) < 60_000
    assert text.index("#### Estimated cost") < text.index("| create |")
    assert "| … 160 more resources |" in text
    total = 200 * 50 * 2 * LIST_PRICES["gpu-t4"]
    assert "| **Total** | **10,000** |" in text and f"**${total:,.2f}**" in text
