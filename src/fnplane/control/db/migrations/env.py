"""Alembic environment: migrations run on a connection handed in by `fnplane.control.db.engine`."""

from alembic import context

from fnplane.control.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` on the command line lands here
    raise RuntimeError("run migrations through fnplane.control.db.engine.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
