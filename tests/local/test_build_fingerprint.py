"""The build fingerprint (`jobrunner.local.build`): stable while the code is, different once any `.py`
file of the package changes, overridable by its documented test hook, and reported by the platform."""
from __future__ import annotations

import os
from pathlib import Path

import httpx

import jobrunner
from jobrunner.local.build import FINGERPRINT_ENV, PACKAGE_DIR, build_fingerprint, compute_fingerprint


def _package(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("x = 1\n")
    (root / "sub" / "mod.py").write_text("def f():\n    return 1\n")
    (root / "notes.txt").write_text("not code")
    return root


def test_the_fingerprint_is_stable_until_a_py_file_changes(tmp_path: Path) -> None:
    pkg = _package(tmp_path / "pkg")
    first = compute_fingerprint(pkg, "1.0")
    assert first == compute_fingerprint(pkg, "1.0")
    assert first.startswith("1.0+")
    assert compute_fingerprint(pkg, "1.1") != first  # the version is part of it

    (pkg / "notes.txt").write_text("other text")  # not code: no change
    assert compute_fingerprint(pkg, "1.0") == first

    mod = pkg / "sub" / "mod.py"
    stat = mod.stat()
    mod.write_text("def f():\n    return 2\n")  # same size, content changed
    os.utime(mod, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = compute_fingerprint(pkg, "1.0")
    assert second != first

    (pkg / "sub" / "new.py").write_text("")  # a new module
    third = compute_fingerprint(pkg, "1.0")
    assert third not in (first, second)
    (pkg / "sub" / "new.py").unlink()  # removed again
    assert compute_fingerprint(pkg, "1.0") == second


def test_the_installed_build_and_the_test_hook() -> None:
    env_free = {k: v for k, v in os.environ.items() if k != FINGERPRINT_ENV}
    assert build_fingerprint(env_free) == compute_fingerprint(PACKAGE_DIR, jobrunner.__version__)
    assert build_fingerprint({FINGERPRINT_ENV: "build-a"}) == "build-a"
    assert build_fingerprint({FINGERPRINT_ENV: "  "}) == build_fingerprint(env_free)


def test_the_platform_reports_its_build_and_running_jobs(tmp_path: Path) -> None:
    from jobrunner.local.replicate.catalog import SLEEP_VERSION
    from tests.platform_fixture import serve_platform

    with serve_platform(tmp_path / "data", "tok", workers=1) as platform:
        headers = {"Authorization": "Bearer tok"}
        with httpx.Client(base_url=platform.url, headers=headers, timeout=10.0) as client:
            info = client.get("/_admin/info").json()
            assert (info["build"], info["running_jobs"]) == (build_fingerprint(), 0)
            job = client.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 30}}).json()
            assert client.get("/_admin/info").json()["running_jobs"] == 1
            client.post(f"/v1/predictions/{job['id']}/cancel").raise_for_status()
            assert client.get("/_admin/info").json()["running_jobs"] == 0
