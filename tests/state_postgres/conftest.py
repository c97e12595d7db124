"""A real PostgreSQL server for the whole session, and a fresh database per test."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pg_server import NoServerBinaries, PgServer, start_server  # noqa: E402

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    pytest.importorskip("psycopg", reason="psycopg is not installed (python -m pip install -e '.[test]')")
    try:
        server = start_server()
    except NoServerBinaries as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    return pg_server.create_database(f"t{next(_counter)}")
