"""Event store: assignment, bandit and outcome events and configuration versions.

DuckDB file by default, PostgreSQL for ``postgresql://`` URLs; see docs/store.md.
"""

from sortition.store.configurations import ConfigurationVersion
from sortition.store.http_logger import HttpEventLogger
from sortition.store.errors import StoreLockedError
from sortition.store.loggers import AssignmentLogger, BanditLogger, StoreLogger
from sortition.store.records import CELL_KEY, PROPENSITY_KEY, ROUND_KEY, SEGMENT_KEY, derive_event_id
from sortition.store.store import AppendResult, EventStore

__all__ = [
    "AppendResult",
    "AssignmentLogger",
    "BanditLogger",
    "CELL_KEY",
    "ConfigurationVersion",
    "EventStore",
    "HttpEventLogger",
    "PROPENSITY_KEY",
    "ROUND_KEY",
    "SEGMENT_KEY",
    "StoreLockedError",
    "StoreLogger",
    "derive_event_id",
]
