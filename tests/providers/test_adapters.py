"""The provider table: one adapter per provider, what it declares, and adding one.

The capabilities an adapter declares are what the reconciler plans by (delete on destroy, a
provider-side deadline, bulk refresh, summaries in lists, projects), so each is checked against
the wire client the adapter builds: a declaration its client cannot honour fails here.
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest
import respx

from jobrunner.errors import ConfigError, CredentialsError
from jobrunner.providers import adapters
from jobrunner.providers.adapter import Endpoint, RequestForm, split_version
from jobrunner.providers.adapters import ADAPTERS, adapter_for
from jobrunner.providers.adapters.replicate import REPLICATE
from jobrunner.providers.base import CreateRequest
from jobrunner.providers.names import PROVIDER_NAMES
from jobrunner.providers.registry import client_factory, get_provider
from jobrunner.providers.replicate import ReplicateProvider, build_client
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob, JobKind, Resource
from jobrunner.spec import expand

V = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
ENV = {"REPLICATE_API_TOKEN": "r8_adapter_test_token", "EMISSARY_CLIENT_API_KEY": "adapter-test-key"}


def test_every_provider_name_has_one_adapter_under_its_own_name() -> None:
    assert tuple(ADAPTERS) == PROVIDER_NAMES
    assert all(adapter.name == name for name, adapter in ADAPTERS.items())


def test_an_unknown_provider_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        adapter_for("openai")
    assert "'openai'" in str(info.value)
    assert all(name in info.value.hint for name in PROVIDER_NAMES)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_adapter_builds_its_client_and_the_client_can_do_what_the_adapter_declares(
    tmp_path: Path, name: str
) -> None:
    adapter = adapter_for(name)
    provider = get_provider(name, None, tmp_path, env=ENV)
    try:
        assert provider.name == name
        caps = adapter.capabilities
        assert caps.bulk_refresh == callable(getattr(provider, "refresh_many", None))
        assert caps.delete_on_destroy == callable(getattr(provider, "delete", None))
        assert caps.project_scoped == callable(getattr(provider, "list_projects", None))
        # Deployments are the one thing updated in place, by the providers whose form says which fields.
        assert caps.update_in_place == bool(adapter.deployment and adapter.deployment.updatable)
        assert caps.update_in_place == callable(getattr(provider, "update_deployment", None))
        assert (adapter.deployment is not None) == callable(getattr(provider, "create_deployment", None))
        # plan checks a VERSIONED provider's versions and destinations with these
        versioned = adapter.form is RequestForm.VERSIONED
        assert versioned == callable(getattr(provider, "get_version_schema", None))
        assert versioned == callable(getattr(provider, "get_model", None))
        assert caps.delete_versions == callable(getattr(provider, "delete_version", None))
    finally:
        asyncio.run(provider.aclose())


def test_the_capabilities_that_differ_between_providers() -> None:
    replicate, emissary, local = (adapter_for(n).capabilities for n in ("replicate", "emissary", "local"))
    assert replicate.provider_deadline and local.provider_deadline and not emissary.provider_deadline
    assert emissary.delete_on_destroy and not replicate.delete_on_destroy and not local.delete_on_destroy
    assert emissary.list_returns_summaries and not replicate.list_returns_summaries
    assert replicate.https_webhooks_only and not local.https_webhooks_only and not emissary.https_webhooks_only
    assert adapter_for("emissary").job_kinds == {JOB_TRAINING}


def test_split_version_lets_the_model_named_in_the_version_win() -> None:
    assert split_version(None, f"me/poems:{V}") == ("me/poems", V)
    assert split_version("x/y", V) == ("x/y", V)
    assert split_version("x/y", f"me/poems:{V}") == ("me/poems", V)
    assert split_version("x/y", "${Training.t.output.version}") == ("x/y", "${Training.t.output.version}")
    assert split_version("x/y", None) == ("x/y", None)


def _job(provider: str, kind: str, request: dict) -> DesiredJob:
    return DesiredJob(address="Training/t", resource_address="Training/t", job_kind=JobKind(kind), provider=provider,
                      file="m.yaml", request=request, fingerprint="f")


def test_versioned_requests_split_the_version_and_only_predictions_get_a_provider_deadline() -> None:
    spec = {"timeout": "2m", "webhook": "https://example.invalid/h"}
    pred = adapter_for("replicate").create_request(
        _job("replicate", JOB_PREDICTION, {"version": f"me/poems:{V}", "input": {"a": 1}}), spec, None)
    assert (pred.model, pred.version, pred.cancel_after) == ("me/poems", V, "2m")
    assert pred.body == {"input": {"a": 1}, "webhook": "https://example.invalid/h"}
    train = adapter_for("local").create_request(
        _job("local", JOB_TRAINING, {"model": "me/x", "version": V, "destination": "me/poems", "input": {}}), spec, None
    )
    assert (train.destination, train.cancel_after) == ("me/poems", None)


def test_project_body_requests_keep_only_the_body_fields() -> None:
    request = {"project_id": "p1", "body": {"base_model": "m", "train_dataset_id": "d1", "name": "n", "stray": 1}}
    req = adapter_for("emissary").create_request(_job("emissary", JOB_TRAINING, request), {}, None)
    assert req == CreateRequest(job_kind=JOB_TRAINING, body={"base_model": "m", "train_dataset_id": "d1", "name": "n"},
                                project_id="p1")
    assert adapter_for("emissary").form is RequestForm.PROJECT_BODY


# --- the worked example of docs/architecture.md: a provider that speaks the Replicate wire -----

ACME_URL = "http://acme.invalid"


# The whole of Acme: the Replicate wire at Acme's URL, with Acme's own credential.
ACME = replace(REPLICATE, name="acme", title="Acme",  # type: ignore[arg-type]  # "acme" is not in the Literal here
               endpoint=Endpoint(credential_env="ACME_API_TOKEN", credential_hint="an Acme API token",
                                 url_env="ACME_BASE_URL", default_url=ACME_URL))


@pytest.fixture
def with_acme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapters, "ADAPTERS", MappingProxyType({**ADAPTERS, "acme": ACME}))


def test_a_provider_added_to_the_table_is_expanded_built_and_called(with_acme: None, tmp_path: Path) -> None:
    res = Resource(kind="Training", name="t", file="m.yaml", line=1,
                   spec={"provider": "acme", "model": "me/base", "version": V, "destination": "me/out",
                         "input": {"order": 3}})
    [job] = expand([res], tmp_path)
    assert job.provider == "acme" and job.request["version"] == V and job.fingerprint
    provider = get_provider("acme", None, tmp_path, env={"ACME_API_TOKEN": "acme-token"})
    assert isinstance(provider, ReplicateProvider) and provider.name == "acme" and provider.http.provider == "acme"
    req = adapter_for("acme").create_request(job, res.spec, None)

    async def create() -> str:
        try:
            return (await provider.create(req)).id
        finally:
            await provider.aclose()

    with respx.mock(base_url=ACME_URL) as mock:
        route = mock.post(f"/v1/models/me/base/versions/{V}/trainings").mock(return_value=httpx.Response(
            201, json={"id": "acme-1", "status": "starting", "model": "me/base", "version": V,
                       "input": {"order": 3}, "created_at": "2026-01-02T00:00:00Z"}))
        assert asyncio.run(create()) == "acme-1"
    assert route.calls.last.request.headers["Authorization"] == "Bearer acme-token"
    with pytest.raises(CredentialsError) as info:
        get_provider("acme", None, tmp_path, env={})
    assert "ACME_API_TOKEN" in str(info.value) and "an Acme API token" in info.value.hint


def test_client_factory_resolves_the_named_function() -> None:
    assert client_factory(REPLICATE.client) is build_client
