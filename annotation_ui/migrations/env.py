"""Alembic environment for the annotation store.

Run through `annotation_ui.store.upgrade(engine)` (no alembic.ini): the engine comes in through
`config.attributes["engine"]`. `python -m annotation_ui db upgrade|current` wraps it.
"""
from alembic import context

from annotation_ui.store import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` CLI with sqlalchemy.url in an ini file
    from annotation_ui.store import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url"))

# Migrations write: on SQLite take the write lock up front (BEGIN IMMEDIATE) so two processes that
# start at once upgrade one after the other.
with engine.execution_options(write=True).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
