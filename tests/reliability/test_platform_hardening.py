"""Local platform hardening: authentication on every route (enumerated from the app, not listed by
hand), request-size limits, path traversal on file routes, and a reduced soak.

The non-loopback bind refusal is tested in tests/local/test_auth_and_security.py
(`test_binding_rules`, `test_serve_refuses_a_public_address_without_allow_remote`); the full soak
(10,000 requests, 32 clients) is `python bench/soak.py`.
"""
from __future__ import annotations

import importlib.util
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.harness import REPO, Platform, make_workspace, run_cli, serve_platform

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with serve_platform(tmp_path_factory.mktemp("hardening"), workers=1, max_body_bytes=LIMIT) as p:
        yield p


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of both wires, path parameters filled in."""
    gate = next(m for m in app.user_middleware if "emissary_app" in m.kwargs)
    found = set()
    for routes in (app.routes, gate.kwargs["emissary_app"].routes):
        for route in routes:
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    found.add((method, re.sub(r"\{[^}]+\}", "x1", route.path)))
    return sorted(found)


def test_every_route_needs_the_token(small_platform: Platform) -> None:
    routes = _routes(small_platform.app)
    assert len(routes) >= 45, routes  # both wires and the admin routes were found
    wrong = small_platform.token[:-1] + ("x" if small_platform.token[-1] != "x" else "y")
    credentials = [{}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Token {wrong}"},
                   {"X-API-Key": wrong}, {"Authorization": small_platform.token}, {"X-API-Key": ""},
                   {"Authorization": f"Basic {small_platform.token}"}]
    with httpx.Client(base_url=small_platform.url, timeout=10) as c:
        for method, path in routes + [("GET", "/"), ("GET", "/v1/unknown"), ("POST", "/_admin/unknown")]:
            for headers in credentials:
                r = c.request(method, path, headers=headers, json={} if method == "POST" else None)
                assert r.status_code == 401, (
                    f"{method} {path} with {list(headers) or 'no credentials'}: {r.status_code}"
                )
                assert small_platform.token not in r.text and wrong not in r.text


def test_oversized_bodies_get_413_whatever_their_framing(small_platform: Platform) -> None:
    big = b"x" * (LIMIT + 1)
    with small_platform.client() as c:
        r = c.post("/v1/predictions", content=b'{"input": {"text": "' + big + b'"}}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        r = c.post("/v1/files", files={"content": ("big.bin", big, "application/octet-stream")})
        assert r.status_code == 413, r.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
            for _ in range(LIMIT // 4096 + 2):
                yield b"y" * 4096

        r = c.post("/v1/files", content=chunks(), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 413, r.text
        em = {"X-API-Key": small_platform.token, "Authorization": ""}
        project = c.post("/v1/projects", json={"name": "p413"}, headers=em).json()["id"]
        r = c.post(f"/v1/projects/{project}/datasets", data={"name": "big"}, headers=em,
                   files={"file": ("big.jsonl", b'{"text": "' + big + b'"}\n')})
        assert r.status_code == 413, r.text
        # the platform is still healthy afterwards
        assert c.get("/v1/account").status_code == 200


def test_a_too_big_training_file_is_a_clear_apply_error(small_platform: Platform, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", small_platform)
    (root / "big.txt").write_text("lorem ipsum " * (LIMIT // 6))
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Model\nmetadata: {name: dest}\nspec: {provider: local, owner: me, "
        "name: big413, visibility: private, hardware: cpu}\n---\napiVersion: jobrunner/v1\nkind: Training\n"
        "metadata: {name: big}\nspec:\n  provider: local\n  model: jobrunner/ngram\n"
        "  version: a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174\n  destination: me/big413\n"
        "  input: {train_data: {$file: big.txt}, order: 3}\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", small_platform.token)
    r = run_cli("apply", "--auto-approve", "m.yaml")
    assert r.code == 1, r.output
    assert "413" in r.output and "Traceback" not in r.output, r.output


TRAVERSALS = ["..%2F..%2Ftoken", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2ftoken", "....//....//token",
              "..\\..\\token", "%00", "/etc/passwd"]


def test_path_traversal_on_file_routes_is_rejected(small_platform: Platform, tmp_path: Path) -> None:
    secret_marker = small_platform.token
    with small_platform.client() as c:
        for t in TRAVERSALS:
            for path in (f"/v1/files/{t}", f"/v1/files/{t}/download", f"/v1/files/x/download/{t}"):
                r = c.get(httpx.URL(small_platform.url + path))
                assert r.status_code in (400, 404), f"{path}: {r.status_code}"
                assert secret_marker not in r.text and "root:" not in r.text
        em = {"X-API-Key": small_platform.token, "Authorization": ""}
        project = c.post("/v1/projects", json={"name": "trav"}, headers=em).json()["id"]
        for t in TRAVERSALS:
            for path in (f"/v1/projects/{project}/datasets/{t}/download",
                         f"/v1/projects/{t}/datasets/x/download",
                         f"/v1/projects/{project}/training-jobs/{t}/checkpoints/{t}/download"):
                r = c.get(httpx.URL(small_platform.url + path), headers=em)
                assert r.status_code in (400, 404), f"{path}: {r.status_code}"
                assert secret_marker not in r.text and "root:" not in r.text
        # uploads named to escape are stored inside the data directory, under a safe name
        name = f"jr-escape-{secrets.token_hex(6)}"
        r = c.post("/v1/files", files={"content": (f"../../../../{name}.txt", b"hello", "text/plain")})
        assert r.status_code in (200, 201, 400), r.text
        r = c.post(f"/v1/projects/{project}/datasets", data={"name": "d"}, headers=em,
                   files={"file": (f"../../../../{name}.jsonl", b'{"text": "hi"}\n')})
        assert r.status_code in (200, 201, 400, 422), r.text
    data_dir = small_platform.data_dir.resolve()
    for directory in [data_dir, *list(data_dir.parents)[:5]]:
        for found in directory.glob(f"*{name}*"):
            raise AssertionError(f"an upload escaped into {found}")
    inside = [p for p in data_dir.rglob(f"*{name}*")]
    assert all(data_dir in p.resolve().parents for p in inside)


def _soak_module() -> Any:
    spec = importlib.util.spec_from_file_location("jobrunner_bench_soak", REPO / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a soak
def test_reduced_soak_no_error_and_flat_memory(tmp_path: Path) -> None:
    """2,000 mixed requests from 32 clients against `jobrunner serve` in its own process."""
    soak = _soak_module()
    result = soak.run_soak(tmp_path / "soak", requests=2000, clients=32)
    print(soak.report(result))
    assert result.errors == {}, result.errors
    assert result.done == 2000
    assert soak.memory_is_flat(result), soak.report(result)
