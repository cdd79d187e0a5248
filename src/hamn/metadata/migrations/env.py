"""Alembic environment: runs migrations on the connection hamn hands it."""

from __future__ import annotations

from alembic import context

from hamn.metadata.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - hamn always passes its connection
    raise RuntimeError("run migrations through hamn.metadata.store.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
