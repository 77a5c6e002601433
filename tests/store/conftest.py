"""Fixtures: every store test runs on DuckDB, and on PostgreSQL when SORTITION_TEST_POSTGRES_URL is set
(`.ci/postgres.sh` starts a throwaway server and sets it)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from sortition.store import EventStore

POSTGRES_URL = os.environ.get("SORTITION_TEST_POSTGRES_URL")
NO_POSTGRES = ("SORTITION_TEST_POSTGRES_URL is not set: no PostgreSQL server for the store tests "
               "(source .ci/postgres.sh to start one)")


@pytest.fixture(scope="session")
def _postgres_schemas():
    created: list[str] = []
    yield created
    if created and POSTGRES_URL:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
            for schema in created:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _schema_url(schemas: list[str]) -> str:
    """A URL whose connections live in a fresh schema (each test gets empty tables)."""
    import psycopg

    schema = "sortition_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    schemas.append(schema)
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request, tmp_path, _postgres_schemas) -> str:
    """A location for a new, empty store: a DuckDB file, or a PostgreSQL URL with its own schema."""
    if request.param == "duckdb":
        return str(tmp_path / "events.duckdb")
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    return _schema_url(_postgres_schemas)


@pytest.fixture
def store(store_url):
    with EventStore(store_url) as s:
        yield s
