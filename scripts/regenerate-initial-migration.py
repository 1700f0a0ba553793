"""Rewrite the initial migration from `fnplane.control.db.tables` (allowed until the first release)."""

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from fnplane.control.db import engine as db_engine

VERSIONS = Path(db_engine.__file__).parent / "migrations" / "versions"


async def main() -> None:
    for old in VERSIONS.glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp}/empty.db")
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.revision(
                    db_engine._alembic_config(sync), message="initial schema", autogenerate=True, rev_id="0001"
                )
            )
        await engine.dispose()
    for new in VERSIONS.glob("0001_*.py"):
        new.rename(VERSIONS / "0001_initial_schema.py")
    print("wrote", VERSIONS / "0001_initial_schema.py", file=sys.stderr)


asyncio.run(main())
