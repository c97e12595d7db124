"""A real PostgreSQL server for the whole session, and a fresh database per test."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from .pg_server import NoServerBinaries, PgServer, start_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
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
