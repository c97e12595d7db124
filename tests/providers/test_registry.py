"""Provider construction: credentials and endpoints from the environment, knobs from the config."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
import respx

from jobrunner.errors import AuthError, ConfigError, CredentialsError
from jobrunner.exitcodes import for_error
from jobrunner.providers.emissary import EmissaryProvider
from jobrunner.providers.registry import get_provider, normalize_base_url
from jobrunner.providers.replicate import ReplicateProvider
from jobrunner.workspace import WorkspaceConfig

SECRET = "r8_ThisIsAVerySecretTokenValue0123"


@pytest.mark.parametrize(
    "name,variable", [("replicate", "REPLICATE_API_TOKEN"), ("emissary", "EMISSARY_CLIENT_API_KEY")]
)
def test_a_missing_credential_names_the_variable(tmp_path: Path, name: str, variable: str) -> None:
    with pytest.raises(CredentialsError) as info:
        get_provider(name, WorkspaceConfig(), tmp_path, env={variable: "  "})
    assert variable in str(info.value) and variable in info.value.hint
    assert for_error(info.value) == 1


def test_replicate_from_the_environment(tmp_path: Path) -> None:
    env = {"REPLICATE_API_TOKEN": SECRET, "REPLICATE_BASE_URL": "http://127.0.0.1:9/v1/"}
    provider = get_provider("replicate", None, tmp_path, env=env)
    assert isinstance(provider, ReplicateProvider)
    assert provider.http.base_url == "http://127.0.0.1:9"
    assert (
        provider.http.limiter.limits.create_per_minute == 600 and provider.http.limiter.limits.other_per_minute == 3000
    )
    for text in (
        repr(provider),
        repr(provider.http),
        repr(provider.http._auth),
        repr(vars(provider)),
        repr(vars(provider.http)),
    ):
        assert SECRET not in text


def test_the_token_is_sent_only_in_the_header_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"REPLICATE_API_TOKEN": SECRET, "REPLICATE_BASE_URL": "http://127.0.0.1:9"}
    provider = get_provider("replicate", None, tmp_path, env=env, sleep=_no_sleep)
    caplog.set_level(logging.DEBUG)

    async def flow() -> None:
        try:
            await provider.get("prediction", "abc")
        finally:
            await provider.aclose()

    with respx.mock(base_url="http://127.0.0.1:9") as mock:
        route = mock.get("/v1/predictions/abc").mock(
            side_effect=[
                httpx.Response(500, json={"detail": "oops"}),
                httpx.Response(401, json={"detail": "bad token", "status": 401}),
            ]
        )
        with pytest.raises(AuthError) as info:
            asyncio.run(flow())
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}" and SECRET not in str(request.url)
    assert SECRET not in caplog.text and "retrying" in caplog.text
    assert SECRET not in str(info.value) + info.value.hint


async def _no_sleep(_: float) -> None:
    return None


def test_emissary_from_the_environment_and_config(tmp_path: Path) -> None:
    config = WorkspaceConfig(
        providers={"emissary": {"base_url": "http://127.0.0.1:7", "rate_limits": {"create_per_minute": 30}}}
    )
    provider = get_provider("emissary", config, tmp_path, env={"EMISSARY_CLIENT_API_KEY": "k" * 20})
    assert isinstance(provider, EmissaryProvider)
    assert provider.http.base_url == "http://127.0.0.1:7"
    assert (
        provider.http.limiter.limits.create_per_minute == 30 and provider.http.limiter.limits.other_per_minute is None
    )
    env_wins = get_provider(
        "emissary",
        config,
        tmp_path,
        env={"EMISSARY_CLIENT_API_KEY": "k" * 20, "EMISSARY_SERVER_URL": "http://127.0.0.1:8"},
    )
    assert isinstance(env_wins, EmissaryProvider)
    assert env_wins.http.base_url == "http://127.0.0.1:8"


def test_config_knobs(tmp_path: Path) -> None:
    config = WorkspaceConfig(
        providers={"replicate": {"retries": {"max_attempts": 2, "backoff_base": 0.1}, "timeout": 5}}
    )
    provider = get_provider("replicate", config, tmp_path, env={"REPLICATE_API_TOKEN": SECRET})
    assert isinstance(provider, ReplicateProvider)
    assert provider.http.policy.max_attempts == 2 and provider.http.policy.backoff_base == 0.1
    assert provider.http._timeout.read == 5.0


@pytest.mark.parametrize(
    "settings,needle",
    [
        ({"ratelimits": {}}, "ratelimits"),
        ({"rate_limits": {"create_per_minute": -1}}, "create_per_minute"),
        ({"timeout": "soon"}, "timeout"),
        ({"retries": {"max_attempts": "many"}}, "max_attempts"),
        ({"base_url": "api.replicate.com"}, "not an http(s) URL"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, settings: dict, needle: str) -> None:
    config = WorkspaceConfig(providers={"replicate": settings})
    with pytest.raises(ConfigError) as info:
        get_provider("replicate", config, tmp_path, env={"REPLICATE_API_TOKEN": SECRET})
    assert needle in str(info.value)


def test_unknown_provider(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        get_provider("openai", WorkspaceConfig(), tmp_path, env={})
    assert "replicate" in info.value.hint


def test_local_with_a_configured_url_needs_a_token(tmp_path: Path) -> None:
    config = WorkspaceConfig(providers={"local": {"url": "http://127.0.0.1:5"}})
    provider = get_provider("local", config, tmp_path, env={})  # nothing resolved yet

    async def flow() -> None:
        try:
            await provider.get("prediction", "x")
        finally:
            await provider.aclose()

    with pytest.raises(CredentialsError) as info:
        asyncio.run(flow())
    assert "JOBRUNNER_LOCAL_TOKEN" in info.value.hint


def test_local_reads_the_workspace_token_file(tmp_path: Path) -> None:
    (tmp_path / ".jobrunner" / "local").mkdir(parents=True)
    (tmp_path / ".jobrunner" / "local" / "token").write_text("jrl_from-the-token-file-0123456789\n")
    config = WorkspaceConfig(providers={"local": {"url": "http://127.0.0.1:5/"}})
    provider = get_provider("local", config, tmp_path, env={})

    async def flow():
        try:
            return await provider.get("prediction", "p1")
        finally:
            await provider.aclose()

    body = {
        "id": "p1",
        "model": "jobrunner/echo",
        "version": "v",
        "status": "succeeded",
        "output": {},
        "created_at": "2026-01-01T00:00:00Z",
    }
    with respx.mock(base_url="http://127.0.0.1:5") as mock:
        route = mock.get("/v1/predictions/p1").mock(return_value=httpx.Response(200, json=body))
        job = asyncio.run(flow())
    assert job.status == "succeeded"
    assert route.calls.last.request.headers["Authorization"] == "Bearer jrl_from-the-token-file-0123456789"


def test_normalize_base_url() -> None:
    assert normalize_base_url("https://api.replicate.com/", variable="X") == "https://api.replicate.com"
    assert normalize_base_url("https://api.replicate.com/v1", variable="X") == "https://api.replicate.com"
    assert normalize_base_url("http://127.0.0.1:8080/prefix", variable="X") == "http://127.0.0.1:8080/prefix"


def test_a_provider_survives_a_second_event_loop(tmp_path: Path) -> None:
    provider = get_provider("replicate", None, tmp_path, env={"REPLICATE_API_TOKEN": SECRET, "REPLICATE_BASE_URL": "http://127.0.0.1:9"})
    body = {"id": "p1", "model": "a/b", "version": "v", "status": "processing", "created_at": "2026-01-01T00:00:00Z"}
    with respx.mock(base_url="http://127.0.0.1:9") as mock:
        route = mock.get("/v1/predictions/p1").mock(return_value=httpx.Response(200, json=body))
        first = asyncio.run(provider.get("prediction", "p1"))
        second = asyncio.run(provider.get("prediction", "p1"))  # a new loop, the same provider
        asyncio.run(provider.aclose())
    assert first.status == second.status == "running" and route.call_count == 2


# --- `providers.emissary.base_url: local`: the workspace's local platform speaks the Emissary wire ---

PLATFORM_TOKEN = "jrl_platform-token-0123456789abcdef"


def _emissary_on_local(tmp_path: Path, env: dict[str, str], **local: str) -> EmissaryProvider:
    config = WorkspaceConfig(providers={"emissary": {"base_url": "local"}, "local": dict(local)})
    provider = get_provider("emissary", config, tmp_path, env=env)
    assert isinstance(provider, EmissaryProvider)
    return provider


def _list_projects(provider: EmissaryProvider, base_url: str) -> respx.Route:
    async def flow() -> None:
        try:
            await provider.http.request("GET", "/v1/projects")
        finally:
            await provider.aclose()

    with respx.mock(base_url=base_url) as mock:
        listed = [{"id": "ms-local", "name": "local"}]
        route = mock.get("/v1/projects").mock(return_value=httpx.Response(200, json=listed))
        asyncio.run(flow())
    return route


def test_emissary_base_url_local_uses_the_configured_platform_and_its_token_not_a_key(tmp_path: Path) -> None:
    env = {"JOBRUNNER_LOCAL_TOKEN": PLATFORM_TOKEN, "EMISSARY_CLIENT_API_KEY": SECRET}  # the key is not sent
    provider = _emissary_on_local(tmp_path, env, url="http://127.0.0.1:5/")
    assert provider.http.base_url is None  # nothing is resolved (or started) before the first request
    route = _list_projects(provider, "http://127.0.0.1:5")
    headers = route.calls.last.request.headers
    assert headers["X-API-Key"] == PLATFORM_TOKEN and "Authorization" not in headers


def test_emissary_base_url_local_auto_starts_the_platform_local_uses(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from jobrunner.local import autostart

    seen: list[dict] = []

    def ensure_platform(root: Path, settings: dict | None = None) -> autostart.PlatformHandle:
        seen.append({"root": root, **(settings or {})})
        return autostart.PlatformHandle("http://127.0.0.1:6", PLATFORM_TOKEN)

    monkeypatch.setattr(autostart, "ensure_platform", ensure_platform)
    provider = _emissary_on_local(tmp_path, {}, idle_stop="5m")
    assert seen == []  # building the client starts nothing (status, validate, plan of finished jobs)
    route = _list_projects(provider, "http://127.0.0.1:6")
    assert route.calls.last.request.headers["X-API-Key"] == PLATFORM_TOKEN
    assert seen == [{"root": tmp_path, "idle_stop": "5m"}]  # providers.local's settings, as for `provider: local`


def test_emissary_server_url_wins_over_base_url_local_and_then_needs_the_key(tmp_path: Path) -> None:
    env = {"EMISSARY_SERVER_URL": "http://127.0.0.1:8", "EMISSARY_CLIENT_API_KEY": "k" * 20}
    assert _emissary_on_local(tmp_path, env).http.base_url == "http://127.0.0.1:8"
    with pytest.raises(CredentialsError) as info:
        _emissary_on_local(tmp_path, {"EMISSARY_SERVER_URL": "http://127.0.0.1:8"})
    assert "EMISSARY_CLIENT_API_KEY" in str(info.value)


def test_emissary_without_key_or_local_setting_says_both_ways_out(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        get_provider("emissary", WorkspaceConfig(), tmp_path, env={})
    assert str(info.value) == "emissary: no credential: EMISSARY_CLIENT_API_KEY is not set"
    assert "export EMISSARY_CLIENT_API_KEY=" in info.value.hint
    assert "providers.emissary.base_url: local" in info.value.hint


def test_base_url_local_is_refused_where_the_platform_does_not_stand_in(tmp_path: Path) -> None:
    config = WorkspaceConfig(providers={"replicate": {"base_url": "local"}})
    with pytest.raises(ConfigError) as info:
        get_provider("replicate", config, tmp_path, env={"REPLICATE_API_TOKEN": SECRET})
    assert "providers.replicate.base_url" in str(info.value) and "provider: local" in info.value.hint


def test_a_mistyped_base_url_is_named_before_the_missing_credential(tmp_path: Path) -> None:
    config = WorkspaceConfig(providers={"emissary": {"base_url": "locall"}})
    with pytest.raises(ConfigError) as info:
        get_provider("emissary", config, tmp_path, env={})
    assert not isinstance(info.value, CredentialsError)
    assert str(info.value) == "providers.emissary.base_url: 'locall' is not an http(s) URL"
    assert "local for the local platform" in info.value.hint
