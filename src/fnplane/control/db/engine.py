"""The database engine: one async SQLAlchemy engine for SQLite (embedded) and PostgreSQL.

`open_database(url)` normalises the URL to an async driver, creates the engine and migrates an
empty (or older) schema to the latest Alembic revision; `check_database(engine)` is the health probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fnplane.control.db.lease import lock_key
from fnplane.shared.errors import UnavailableError

MIGRATION_LOCK = "fnplane.migrations"
_MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """`postgresql://` and `sqlite:///` become their async-driver forms; others pass unchanged."""
    parsed = make_url(url)
    driver = {
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
    }
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision (an empty database gets every table)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # replicas starting together on an empty database: one migrates, the others then find
            # the schema current (the lock ends with this transaction)
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(MIGRATION_LOCK)}
            )
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))


async def open_database(url: str) -> AsyncEngine:
    """The engine of `url`, migrated; UnavailableError (one line naming the database, its password
    hidden) when the URL is not one we can use or the database cannot be opened."""
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as error:
        raise UnavailableError(f"cannot use the database URL {_shown(url)}: {_first_line(error)}") from None
    try:
        await migrate(engine)
    except (SQLAlchemyError, OSError) as error:
        await engine.dispose()
        raise UnavailableError(f"cannot open the database {_shown(url)}: {_first_line(error)}") from None
    return engine


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(unparsable URL)"


def _first_line(error: BaseException) -> str:
    # the driver's own message (a DBAPI error's), without SQLAlchemy's background link and SQL
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


async def check_database(engine: AsyncEngine) -> None:
    """One round trip (`SELECT 1`); raises if the database cannot be reached."""
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
