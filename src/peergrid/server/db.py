"""Connecting to the platform's database and bringing its schema up to date.

SQLite is the default (a file; WAL journal and `synchronous = FULL`, so a commit is durable when
it returns — an order is acknowledged only after one) and PostgreSQL takes the same URL form
(`postgresql+psycopg://user@host/db`). The schema is Alembic's: `migrate` upgrades a database
to the newest revision, creating it from nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from peergrid.errors import InputError
from peergrid.server.constants import DEFAULT_URL

__all__ = ["DEFAULT_URL", "current_revision", "downgrade", "engine_for", "migrate"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


#: The advisory lock of the market clock (PostgreSQL): a clock step holds it exclusively, an
#: order or reading write shares it, so a step sees every write acknowledged before it.
CLOCK_LOCK = 0x7065_6572_6772_6964 & 0x7FFF_FFFF_FFFF_FFFF


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # transactions are begun by SQLAlchemy (`_sqlite_begin`), not implicitly by the driver
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = FULL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA busy_timeout = 5000")
    cur.close()


def engine_for(url: str) -> Engine:
    """An engine for a database URL (`sqlite:///FILE` or `postgresql+psycopg://…`).

    Raises:
        InputError: a URL that is not one of these.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise InputError(f"not a database URL: {url!r}", source="--db") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database:
            raise InputError("a SQLite URL needs a file: sqlite:///FILE", source="--db")
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        _sqlite_transactions(engine)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise InputError(
        f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://…", source="--db"
    )


def _sqlite_transactions(engine: Engine) -> None:
    """A writing transaction takes SQLite's write lock at once (BEGIN IMMEDIATE), so what it
    read cannot change before it writes; the writers of this process queue on a lock of their
    own first (SQLite's busy handler polls, and under load a writer could wait past
    `busy_timeout` while others keep winning)."""
    lock = threading.Lock()

    def begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("peergrid_write", False)
        if write:
            lock.acquire()
            conn.info["peergrid_write_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            end(conn)
            raise

    def end(conn: Connection) -> None:
        if conn.info.pop("peergrid_write_lock", False):
            lock.release()

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


@contextmanager
def writing(engine: Engine, lock: str | None = None) -> Iterator[Connection]:
    """A transaction that writes, committed when the block ends (rolled back on an error).

    `lock`: "clock" takes the market clock's lock exclusively, "shared" shares it (PostgreSQL's
    advisory transaction lock; SQLite's write lock serialises every writer anyway)."""
    with engine.connect() as conn:
        conn.execution_options(peergrid_write=True)
        with conn.begin():
            if lock is not None and engine.dialect.name == "postgresql":
                fn = "pg_advisory_xact_lock" if lock == "clock" else "pg_advisory_xact_lock_shared"
                conn.execute(text(f"SELECT {fn}(:k)"), {"k": CLOCK_LOCK})
            yield conn


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to `revision` (default: the newest)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database to `revision` ("base": no tables)."""
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision (None: not migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev
