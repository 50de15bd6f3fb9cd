"""Engines, migrations and transactions: everything that talks to the database as such.

`make_engine(url)` gives an engine; on SQLite every connection runs in WAL mode with
`synchronous=NORMAL`, foreign keys on and a busy timeout, and every *write* transaction starts with
`BEGIN IMMEDIATE`, so a writer takes the write lock before it reads and never fails half-way with
"database is locked" (readers never block writers under WAL). `Database` holds a store's engines
and hands out read and write sessions/connections; inside `nowait()` a SQLite write that would wait
raises `WouldBlock` before anything is written. `upgrade(engine)` brings the schema to the newest
Alembic revision in place.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import WouldBlock

DEFAULT_URL = "sqlite:///annotations.db"


def make_engine(url: str, *, busy_timeout_s: float = 30.0, echo: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`; for SQLite, with WAL, foreign keys, busy timeout and the BEGIN hook.

    Transactions on connections with the execution option `write=True` start with
    `BEGIN IMMEDIATE` on SQLite (the write lock is taken up front, so the transaction cannot fail
    "database is locked" half-way); others start with a plain deferred `BEGIN`, or with none
    when the option `snapshot=False` is set (statements then run in autocommit mode).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": busy_timeout_s, "check_same_thread": False}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, echo=echo, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            # Take transaction control away from the sqlite3 module; the "begin" hook issues BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            options = conn.get_execution_options()
            if options.get("write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif options.get("snapshot", True):
                conn.exec_driver_sql("BEGIN")
            # snapshot=False: no BEGIN, each statement reads the latest commit on its own (autocommit)

        return engine
    if u.drivername == "postgresql":
        # SQLAlchemy 2.1 defaults to psycopg 3; use psycopg2 when that is what is installed.
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            url = u.set(drivername="postgresql+psycopg2")
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, echo=echo, **kwargs)



MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema in place to `revision` (default: the newest)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()  # type: ignore[arg-type]


class Database:
    """A store's engines and transactions. Thread-safe; share one per process.

    SQLite has one writer at a time: threads of this process queue on a Python lock before
    `BEGIN IMMEDIATE` (SQLite's own busy handler polls with sleeps of up to 100 ms: slow and unfair
    under load); other processes still wait on the busy timeout.
    """

    def __init__(self, url: str = DEFAULT_URL, engine_kwargs: dict | None = None):
        self.url = url
        self.engine = make_engine(url, **(engine_kwargs or {}))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        self.write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._write_engine = self.engine.execution_options(write=True)
        self._hot_read_engine = self.engine.execution_options(snapshot=False)
        self._nowait = contextvars.ContextVar("annotation_store_nowait", default=False)
        on_disk = self.is_sqlite and (make_url(url).database or ":memory:") != ":memory:"
        self._nowait_write_engine = (make_engine(url, busy_timeout_s=0.0, **(engine_kwargs or {})).execution_options(write=True)
                                     if on_disk else self._write_engine)

    def close(self) -> None:
        self.engine.dispose()
        self._nowait_write_engine.engine.dispose()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """An ORM session in a read transaction."""
        with self._read() as s:
            with s.begin():
                yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """An ORM session in a write transaction: all or nothing (SQLite: BEGIN IMMEDIATE, after this
        process's other writers)."""
        with self.write_lock:
            with self._write() as s:
                with s.begin():
                    yield s

    @contextlib.contextmanager
    def rconn(self):
        """Reads on a Core connection for the hot paths: on SQLite without a transaction around them
        (each statement sees the latest commit; what they read together cannot disagree in a way
        that matters: immutable prompts and responses, a user's own rows), which saves a BEGIN and a
        COMMIT per call; never blocks writers under WAL. Elsewhere a read transaction."""
        with self._hot_read_engine.begin() as c:
            yield c

    @contextlib.contextmanager
    def wconn(self):
        """A write transaction on a Core connection: all or nothing (SQLite: BEGIN IMMEDIATE, with
        this process's writers queued on a Python lock first, as in `write`). Inside `nowait()` on
        SQLite: WouldBlock instead of waiting, for the lock or for another process's writer."""
        if not (self.is_sqlite and self._nowait.get()):
            with self.write_lock:
                with self._write_engine.begin() as c:
                    yield c
            return
        if not self.write_lock.acquire(blocking=False):
            raise WouldBlock("another writer of this process holds the write lock")
        try:
            conn = self._nowait_write_engine.connect()
            try:
                trans = conn.begin()  # BEGIN IMMEDIATE with a busy timeout of 0
            except OperationalError as e:
                conn.close()
                if "locked" in str(e.orig).lower() or "busy" in str(e.orig).lower():
                    raise WouldBlock("another process is writing to the database") from None
                raise
            with conn:
                with trans:
                    yield conn
        finally:
            self.write_lock.release()

    @contextlib.contextmanager
    def nowait(self):
        """Calls made inside never wait for a writer: on SQLite a write transaction that would wait
        (for this process's write lock or another process's writer) raises WouldBlock before
        anything is written. Reads never wait under WAL. Lets an event loop run the hot calls
        itself and hand them to a thread only when they would block (see annotation_ui.app)."""
        token = self._nowait.set(True)
        try:
            yield
        finally:
            self._nowait.reset(token)

    def lock(self, stmt):
        """SELECT ... FOR UPDATE where the database has row locks (SQLite already holds the write lock)."""
        return stmt if self.is_sqlite else stmt.with_for_update()


def sqlite_integrity_check(url: str) -> str:
    """`PRAGMA integrity_check` of a SQLite database ("ok" when sound)."""
    import sqlite3

    path = make_url(url).database
    con = sqlite3.connect(path)
    try:
        return "\n".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def env_url(default: str = DEFAULT_URL) -> str:
    return os.environ.get("ANNOTATION_DB", default)
