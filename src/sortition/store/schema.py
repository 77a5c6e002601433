"""The store's tables: one definition, rendered for DuckDB and PostgreSQL.

Timestamps are stored as ``TIMESTAMP`` (without time zone) holding UTC: both engines compare and
add intervals to them the same way, and no time-zone database is needed. Attribute maps, extra
logging and metadata are stored as JSON text so the schema does not change with the attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

# 1: the first release. 2: bandit_events.offered_actions (stores of version 1 are upgraded in place
# when opened: the column is added, and their rows have it NULL). 3: the server's api_keys and
# publications tables, and dead_letters (created in place, empty, when an older store is opened).
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text" | "float" | "int" | "timestamp"
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_SQL_TYPES = {"text": "TEXT", "float": "DOUBLE PRECISION", "int": "INTEGER", "timestamp": "TIMESTAMP"}

ASSIGNMENTS = Table(
    "assignments",
    (
        Column("event_id", "text", False),
        Column("flag_key", "text", False),
        Column("allocation", "text"),
        Column("experiment", "text"),
        Column("variation", "text", False),
        Column("subject", "text", False),
        Column("ts", "timestamp", False),
        Column("cell", "text"),
        Column("propensity", "float"),
        Column("round", "int"),
        Column("subject_attributes", "text"),
        Column("extra_logging", "text"),
        Column("meta_data", "text"),
    ),
    key="event_id",
)

BANDIT_EVENTS = Table(
    "bandit_events",
    (
        Column("event_id", "text", False),
        Column("flag_key", "text", False),
        Column("bandit_key", "text", False),
        Column("subject", "text", False),
        Column("action", "text", False),
        Column("action_probability", "float", False),
        Column("optimality_gap", "float"),
        Column("model_version", "text"),
        Column("ts", "timestamp", False),
        Column("subject_numeric_attributes", "text"),
        Column("subject_categorical_attributes", "text"),
        Column("action_numeric_attributes", "text"),
        Column("action_categorical_attributes", "text"),
        Column("meta_data", "text"),
        # JSON {action: {"numericAttributes": ..., "categoricalAttributes": ...}} of every action
        # offered at the decision (Sortition's sortitionOfferedActions field); NULL when not logged.
        Column("offered_actions", "text"),
    ),
    key="event_id",
)

OUTCOMES = Table(
    "outcomes",
    (
        Column("event_id", "text", False),
        Column("subject", "text", False),
        Column("metric", "text", False),
        Column("value", "float", False),
        Column("ts", "timestamp", False),
    ),
    key="event_id",
)

CONFIGURATIONS = Table(
    "configurations",
    (
        Column("version", "int", False),
        Column("created_at", "timestamp", False),
        Column("flags", "text", False),
        Column("bandits", "text"),
    ),
    key="version",
)

# --- faults: events the store refused (issue 13 §1) -------------------------------------------------
# An event that fails validation (or that the engine refuses) is kept here with the reason, so one bad
# event never blocks the batch it came in. ``event`` is the event as JSON text (non-ASCII escaped).
# Older stores get the table when opened (CREATE TABLE IF NOT EXISTS): no other change.
DEAD_LETTERS = Table(
    "dead_letters",
    (
        Column("event_id", "text", False),
        Column("kind", "text", False),
        Column("reason", "text", False),
        Column("event", "text", False),
        Column("received_at", "timestamp", False),
    ),
    key="event_id",
)
# --- end faults -----------------------------------------------------------------------------------

# ---- the server's tables (sortition.store.publishing) ---------------------------------------------
# API keys: only the SHA-256 of each key is stored; key_id is the key's public prefix, for lookups.
API_KEYS = Table(
    "api_keys",
    (
        Column("key_id", "text", False),
        Column("key_hash", "text", False),
        Column("role", "text", False),
        Column("environment", "text"),  # NULL: every environment (admin keys)
        Column("created_at", "timestamp", False),
        Column("revoked_at", "timestamp"),
        Column("description", "text"),
    ),
    key="key_id",
)

# Which configuration version each environment serves: the row with the highest seq is current, the
# earlier ones are its history (publish and rollback both append a row).
PUBLICATIONS = Table(
    "publications",
    (
        Column("seq", "int", False),
        Column("environment", "text", False),
        Column("version", "int", False),
        Column("published_at", "timestamp", False),
        Column("action", "text", False),  # "publish" | "rollback" | "round"
        Column("note", "text"),
    ),
    key="seq",
)
SERVER_TABLES = (API_KEYS, PUBLICATIONS)
# ----------------------------------------------------------------------------------------------------

EVENT_TABLES = {"assignment": ASSIGNMENTS, "bandit": BANDIT_EVENTS, "outcome": OUTCOMES}
TABLES = (ASSIGNMENTS, BANDIT_EVENTS, OUTCOMES, CONFIGURATIONS, DEAD_LETTERS, *SERVER_TABLES)

# Indexes for the joins: exposures by flag, outcomes by subject and metric, decisions by subject.
INDEXES = (
    ("assignments_flag_subject", "assignments", ("flag_key", "subject", "ts")),
    ("outcomes_subject_metric", "outcomes", ("subject", "metric", "ts")),
    ("bandit_events_subject", "bandit_events", ("subject", "ts")),
)


def create_statements(indexes: bool = True) -> list[str]:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` statements, valid in DuckDB and PostgreSQL alike.

    DuckDB joins by hashing and only slows its appends with secondary indexes, so its backend asks
    for tables only (``indexes=False``); PostgreSQL gets the indexes the joins use.
    """
    statements = [
        "CREATE TABLE IF NOT EXISTS sortition_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    ]
    for table in TABLES:
        cols = ", ".join(
            f"{c.name} {_SQL_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS {table.name} ({cols}, PRIMARY KEY ({table.key}))")
    for name, table_name, cols in INDEXES if indexes else ():
        statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table_name} ({', '.join(cols)})")
    # Recorded so a later release can migrate stores written by this one.
    statements.append("INSERT INTO sortition_meta (key, value) VALUES ('schema_version', "
                      f"'{SCHEMA_VERSION}') ON CONFLICT DO NOTHING")
    return statements


def upgrade_statements(present: dict[str, set[str]]) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for every column a store written by an older release lacks.

    ``present`` maps each table name to the columns it has now. Added columns are nullable, so the
    old rows read as NULL there. Both engines run the statements unchanged.
    """
    statements = []
    for table in TABLES:
        have = present.get(table.name)
        if have is None:
            continue
        for c in table.columns:
            if c.name not in have:
                if not c.nullable:
                    raise RuntimeError(f"cannot add the required column {table.name}.{c.name} "
                                       "to an existing store")
                statements.append(f"ALTER TABLE {table.name} ADD COLUMN {c.name} {_SQL_TYPES[c.kind]}")
    # Tables new in this release were created by create_statements; record the version either way.
    statements.append(
        f"UPDATE sortition_meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version' "
        f"AND CAST(value AS INTEGER) < {SCHEMA_VERSION}"
    )
    return statements
