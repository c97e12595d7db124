"""Start a throwaway PostgreSQL server for tests: a temp dir, `initdb`, `pg_ctl`, a loopback port.

Used by the PostgreSQL state tests and by the CI workflow acceptance test. PostgreSQL refuses to
run as root (CI runs as root), so when we are root the server runs as an unprivileged user
through `setpriv` (or `runuser`). `find_server_bin()` looks on PATH and in Debian's
/usr/lib/postgresql/<version>/bin, where `apt-get install postgresql` puts the binaries.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def find_server_bin() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None when no server is installed."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)
    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(d) for d in ("/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")]
    for d in candidates:
        if all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PgServer:
    bindir: Path
    base: Path
    port: int
    user: str = "jobrunner"
    _as: list[str] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = (self._as or []) + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        data = self.base / "data"
        init = self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user,
                         "--no-sync", "-E", "UTF8", "--locale=C")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=50")
        start = self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "server.log"),
                          "-w", "-t", "30", "-o", opts, "start")
        if start.returncode != 0:
            log = (self.base / "server.log").read_text() if (self.base / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr or start.stdout}\n{log}")

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


class NoServerBinaries(RuntimeError):
    """No PostgreSQL server is installed on this machine (the only reason tests may skip)."""


def start_server() -> PgServer:
    """Start a server; raises NoServerBinaries, or RuntimeError with the reason it failed."""
    bindir = find_server_bin()
    if bindir is None:
        raise NoServerBinaries("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH "
                           "or under /usr/lib/postgresql/*/bin; install the `postgresql` package")
    last: Exception | None = None
    for _ in range(3):  # the free port we picked may be taken before the server binds it: try again
        base = Path(tempfile.mkdtemp(prefix="jobrunner-pg-"))
        run_as = _run_as(base)
        server = PgServer(bindir=bindir, base=base, port=_free_port(), _as=run_as)
        try:
            server.start()
            return server
        except Exception as exc:
            last = exc
            server.stop()
    raise RuntimeError(f"could not start PostgreSQL: {last}")


def _run_as(base: Path) -> list[str]:
    """The command prefix that runs the server unprivileged when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return []
    user = _unprivileged_user()
    os.chown(base, user.pw_uid, user.pw_gid)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    raise RuntimeError("running as root and neither setpriv nor runuser is available")
