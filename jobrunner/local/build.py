"""The build fingerprint: which jobrunner code a process runs, so a CLI never drives a platform of another build.

An auto-started platform outlives the CLI that started it, and so it can outlive an upgrade
(`git pull && pip install .`): the old server keeps the old modules it already imported while its
worker processes import new ones from disk, and the mix fails (an `ImportError`) or, worse,
silently serves the old behaviour. Both sides therefore compute `build_fingerprint()`: the server
once at start (it reports it in `GET /_admin/info`), the CLI when it looks for a platform; a
mismatch makes `autostart.ensure_platform` replace an idle platform or refuse a busy one.

The fingerprint is `__version__` plus a digest of (relative path, size, mtime_ns) of every `.py`
file of the installed package: a `stat` per file, no reading, a few milliseconds. A reinstall
changes it even when no byte changed (new mtimes), which only costs a restart of an idle platform.

`JOBRUNNER_BUILD_FINGERPRINT`, when set, replaces the computed value in the process that reads it
(and in the servers it starts, which inherit the environment). It is a test hook: tests simulate an
upgrade by starting a platform under one value and running the CLI under another.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import jobrunner

FINGERPRINT_ENV = "JOBRUNNER_BUILD_FINGERPRINT"
PACKAGE_DIR = Path(jobrunner.__file__).resolve().parent


def compute_fingerprint(package_dir: Path, version: str) -> str:
    """`VERSION+DIGEST` over the (relative path, size, mtime_ns) of the `.py` files under `package_dir`."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:  # removed while we walk: an upgrade in progress, which the digest should differ for
            continue
        digest.update(f"{path.relative_to(package_dir).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{version}+{digest.hexdigest()[:16]}"


@functools.cache
def _installed() -> str:
    # Once per process: a server reports the code it started with, not what is on disk later.
    return compute_fingerprint(PACKAGE_DIR, jobrunner.__version__)


def build_fingerprint(env: Mapping[str, str] | None = None) -> str:
    """This process's build: `$JOBRUNNER_BUILD_FINGERPRINT` when set, else the installed package's."""
    override = (os.environ if env is None else env).get(FINGERPRINT_ENV, "").strip()
    return override or _installed()
