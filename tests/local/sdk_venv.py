"""Cached virtual environments for official clients whose pins clash with jobrunner's.

`emissary-client-sdk` 0.4.4 pins httpx<0.28 and pydantic<2.10, so it cannot live in jobrunner's
own environment. `sdk_python(package, version)` builds `python -m venv` + `pip install` once,
keyed by package and version, under `$JOBRUNNER_TEST_VENVS` (default
`~/.cache/jobrunner-test-venvs`), and returns its interpreter. The build goes to a temporary
directory that is renamed into place, so concurrent or interrupted runs never see half an env.
When it cannot be built (no package index reachable, no venv module) it raises `VenvUnavailable`
with pip's own explanation, and the caller skips.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


class VenvUnavailable(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("JOBRUNNER_TEST_VENVS") or Path.home() / ".cache" / "jobrunner-test-venvs")


def _python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(python: Path, module: str) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=60)
    return probe.returncode == 0


def sdk_python(package: str, version: str, module: str, *, timeout: float = 600) -> Path:
    root = cache_root()
    env = root / f"{package}-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    python = _python_in(env)
    if _works(python, module):
        return python
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=env.name + ".", dir=root))
    try:
        made = subprocess.run([sys.executable, "-m", "venv", str(tmp)], capture_output=True, text=True, timeout=120)
        if made.returncode != 0:
            raise VenvUnavailable(f"python -m venv failed: {made.stderr.strip()[-500:]}")
        pip = subprocess.run(
            [
                str(_python_in(tmp)),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"{package}=={version}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if pip.returncode != 0:
            raise VenvUnavailable(f"pip install {package}=={version} failed: {pip.stderr.strip()[-800:]}")
        if env.exists():
            shutil.rmtree(env, ignore_errors=True)
        try:
            tmp.rename(env)
        except OSError:
            if not _works(python, module):  # someone else won the race with a broken env
                raise
        if not _works(python, module):
            raise VenvUnavailable(f"{package}=={version} installed but `import {module}` fails")
        return python
    except subprocess.TimeoutExpired as exc:
        raise VenvUnavailable(f"building the {package} environment timed out: {exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
