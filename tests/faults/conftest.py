"""The faults suite: hostile input and injected failures (issue 13). Store tests run on DuckDB and, when
SORTITION_TEST_POSTGRES_URL is set (`. .ci/postgres.sh`), on PostgreSQL: the store suite's fixtures."""

from store.conftest import _postgres_schemas, store, store_url  # noqa: F401 - fixtures
