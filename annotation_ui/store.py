"""The annotation store: users, prompts, responses, assignments, rankings and reviews.

SQLAlchemy 2.x ORM over any SQLAlchemy URL; SQLite (`sqlite:///annotations.db`) is the default and
PostgreSQL is tested. On SQLite every connection runs in WAL mode with `synchronous=NORMAL`, foreign
keys on and a busy timeout, and every *write* transaction starts with `BEGIN IMMEDIATE`, so a writer
takes the write lock before it reads and never fails half-way with "database is locked" (readers run
in ordinary deferred transactions and never block writers under WAL).

The schema is versioned with Alembic (`annotation_ui/migrations`); `Store(url)` upgrades an older
database in place to the newest revision before use.

Invariants the database itself enforces (so no code path can break them):
- one ranking per (prompt, annotator): a repeated submit returns the stored ranking, never a second row;
- one assignment per (prompt, annotator): an item never goes twice to the same annotator;
- a ranking's entries are written in the same transaction as the ranking and its assignment update.

Failures are reported as `StoreError` (or its subclasses) with a message meant for the person who
caused it; nothing is written when one is raised.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import hmac
import logging
import math
import os
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    insert,
    update,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

log = logging.getLogger(__name__)

ROLES = ("annotator", "reviewer", "admin")
FLAGS = ("harmful", "needless_refusal", "language_mixing", "factual_error", "unhelpful")
ASSIGNMENT_STATUSES = ("active", "done", "skipped", "expired")
MAX_RATIONALE_CHARS = 20_000
HINT_TTL_S = 1.0  # how long next_item's shared candidate list is reused
DEFAULT_URL = "sqlite:///annotations.db"
USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class StoreError(ValueError):
    """A request the store refuses; the message says what is wrong and what was expected."""


class SubmissionError(StoreError):
    """A ranking that cannot be stored as sent (nothing was written)."""


class AccessError(StoreError):
    """The caller may not do this (unknown/disabled user, wrong role, someone else's item)."""


class WouldBlock(Exception):
    """Raised inside :meth:`Store.nowait` when a write would have to wait for another writer.
    Nothing was written; the same call made normally (in a thread that may wait) is safe."""


def utcnow() -> dt.datetime:
    """Naive UTC timestamps: compared identically by SQLite (as text) and PostgreSQL."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# Password hashing: scrypt from the standard library (memory-hard, ~50 ms per check).
# Stored as "scrypt$n$r$p$salt_hex$hash_hex".
# --------------------------------------------------------------------------------------------
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    if not password:
        raise StoreError("password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
            maxmem=64 * 1024 * 1024, dklen=len(hash_hex) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


# A hash of a random password, so that unknown users cost the same time as known ones.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(8))
    return _DUMMY_HASH


# --------------------------------------------------------------------------------------------
# ORM models (the newest schema revision; migrations/versions/ holds how each revision was built)
# --------------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('annotator', 'reviewer', 'admin')", name="ck_users_role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    ui_lang: Mapped[str] = mapped_column(String(8), nullable=False, default="en", server_default="en")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(256), unique=True, nullable=False)
    lang: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    category: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    source: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    messages: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    responses: Mapped[list["Response"]] = relationship(
        back_populates="prompt", order_by="Response.position", cascade="all, delete-orphan"
    )


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("prompt_id", "position", name="uq_responses_prompt_position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False, index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    prompt: Mapped[Prompt] = relationship(back_populates="responses")


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("prompt_id", "user_id", name="uq_assignments_prompt_user"),
        CheckConstraint("status IN ('active', 'done', 'skipped', 'expired')", name="ck_assignments_status"),
        Index("ix_assignments_prompt_status", "prompt_id", "status"),
        Index("ix_assignments_user_status", "user_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    leased_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    lease_expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Ranking(Base):
    __tablename__ = "rankings"
    __table_args__ = (UniqueConstraint("prompt_id", "user_id", name="uq_rankings_prompt_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id", ondelete="SET NULL"), nullable=True)
    rationale: Mapped[str] = mapped_column(Text, nullable=False, default="")
    time_spent_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    entries: Mapped[list["RankingEntry"]] = relationship(
        back_populates="ranking", cascade="all, delete-orphan", order_by="RankingEntry.response_id"
    )


class RankingEntry(Base):
    __tablename__ = "ranking_entries"
    __table_args__ = (
        UniqueConstraint("ranking_id", "response_id", name="uq_ranking_entries_ranking_response"),
        CheckConstraint("rank >= 1", name="ck_ranking_entries_rank"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), nullable=False, index=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    flags: Mapped[str] = mapped_column(String(256), nullable=False, default="")  # comma-separated FLAGS
    ranking: Mapped[Ranking] = relationship(back_populates="entries")


class Review(Base):
    """A reviewer's adjudication of one prompt: the final ranking, overriding the consensus."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False, unique=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    ranks: Mapped[dict] = mapped_column(JSON, nullable=False)  # {"<response id>": rank}
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


# --------------------------------------------------------------------------------------------
# Engine and schema
# --------------------------------------------------------------------------------------------
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


MIGRATIONS_DIR = Path(__file__).with_name("migrations")


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


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
@dataclass
class StoreConfig:
    url: str = DEFAULT_URL
    """SQLAlchemy URL of the database (SQLite file by default; any SQLAlchemy URL works)."""
    overlap: int = 3
    """k: how many different annotators rank each prompt."""
    lease_seconds: float = 1800.0
    """An assignment not submitted within this time returns to the pool for others."""


def dense_ranks(ranks: list[int]) -> list[int]:
    """[1, 3, 3, 4] -> [1, 2, 2, 3]: same order and ties, no gaps."""
    order = {v: i + 1 for i, v in enumerate(sorted(set(ranks)))}
    return [order[r] for r in ranks]


class Store:
    """All reads and writes of the annotation database. Thread-safe; share one per process."""

    def __init__(self, url: str = DEFAULT_URL, *, overlap: int = 3, lease_seconds: float = 1800.0,
                 migrate: bool = True, engine_kwargs: dict | None = None):
        if overlap < 1:
            raise StoreError(f"overlap must be >= 1, got {overlap}")
        self.url = url
        self.overlap = overlap
        self.lease_seconds = lease_seconds
        self.engine = make_engine(url, **(engine_kwargs or {}))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._write_engine = self.engine.execution_options(write=True)
        self._hot_read_engine = self.engine.execution_options(snapshot=False)
        # nowait(): SQLite writes that fail at once instead of waiting for another process's writer
        self._nowait = contextvars.ContextVar("annotation_store_nowait", default=False)
        on_disk = self.is_sqlite and (make_url(url).database or ":memory:") != ":memory:"
        self._nowait_write_engine = (make_engine(url, busy_timeout_s=0.0, **(engine_kwargs or {})).execution_options(write=True)
                                     if on_disk else self._write_engine)
        self._prepare_statements()
        self._hint: list[int] = []
        self._hint_read_at = -math.inf
        self._hint_lock = threading.Lock()
        if migrate:
            upgrade(self.engine)

    def _prepare_statements(self) -> None:
        """The hot-path statements, built once (SQLAlchemy caches their compiled form)."""
        from sqlalchemy import bindparam

        U, A, P, R, RK = (t.__table__ for t in (User, Assignment, Prompt, Response, Ranking))
        name, pid = bindparam("name"), bindparam("pid")
        self._q_open = (
            select(U.c.id.label("uid"), U.c.active, A.c.id.label("aid"), A.c.prompt_id.label("pid"),
                   A.c.lease_expires_at.label("expires"))
            .select_from(U.outerjoin(A, and_(A.c.user_id == U.c.id, A.c.status == "active")))
            .where(U.c.name == name).order_by(A.c.id).limit(1))
        self._q_item = (select(P.c.id, P.c.ext_id, P.c.lang, P.c.category, P.c.prompt, P.c.messages,
                               R.c.id.label("rid"), R.c.text)
                        .select_from(P.outerjoin(R, R.c.prompt_id == P.c.id)).where(P.c.id == pid)
                        .order_by(R.c.position))
        self._q_progress = (select(A.c.status, func.count()).where(A.c.user_id == bindparam("uid"))
                            .group_by(A.c.status))
        self._q_submit_ctx = (  # one row per response of the prompt (its id in resp_id)
            select(U.c.id.label("uid"), U.c.active, A.c.id.label("aid"), A.c.status, A.c.leased_at, RK.c.id.label("rid"),
                   R.c.id.label("resp_id"))
            .select_from(U.outerjoin(A, and_(A.c.user_id == U.c.id, A.c.prompt_id == pid))
                         .outerjoin(RK, and_(RK.c.user_id == U.c.id, RK.c.prompt_id == pid))
                         .outerjoin(R, R.c.prompt_id == pid))
            .where(U.c.name == name).order_by(R.c.position))
        self._q_submit_check = (select(A.c.status, U.c.active).select_from(A.join(U, U.c.id == A.c.user_id))
                                .where(A.c.id == bindparam("aid")))
        # allocation (next_item's write path)
        now, uid = bindparam("now", type_=DateTime()), bindparam("uid")
        q = select(U.c.id, U.c.active).where(U.c.name == name)
        self._q_user_w = q if self.is_sqlite else q.with_for_update()
        self._q_user_open = (select(A.c.id, A.c.prompt_id, A.c.lease_expires_at)
                             .where(A.c.user_id == uid, A.c.status == "active").order_by(A.c.id))

        def filled(exclude_user: bool = False):
            """Correlated count of the slots of a prompt taken: done, or leased and not expired."""
            A2 = A.alias("a2")
            cond = [A2.c.prompt_id == P.c.id,
                    or_(A2.c.status == "done", and_(A2.c.status == "active", A2.c.lease_expires_at > now))]
            if exclude_user:
                cond.append(A2.c.user_id != uid)
            return select(func.count(A2.c.id)).where(*cond).scalar_subquery()

        self._q_taken_by_others = select(filled(exclude_user=True)).where(P.c.id == pid)
        A3 = A.alias("a3")
        mine = select(A3.c.id).where(A3.c.prompt_id == P.c.id, A3.c.user_id == uid, A3.c.status != "expired").exists()
        f = filled()
        cand = select(P.c.id).where(~mine, f < self.overlap).order_by(f.desc(), P.c.id)
        self._q_candidates = cand.limit(bindparam("n"))  # read outside the write lock, verified inside
        self._q_hint = select(P.c.id).where(f < self.overlap).order_by(f.desc(), P.c.id).limit(64)
        cand = cand.limit(1)
        self._q_candidate = cand if self.is_sqlite else cand.with_for_update(skip_locked=True, of=P)
        self._q_any_candidate = select(P.c.id).where(~mine, f < self.overlap).limit(1)
        self._q_filled = select(f).where(P.c.id == pid)
        self._q_assignment_of = select(A.c.id).where(A.c.prompt_id == pid, A.c.user_id == uid)
        # Inside the write transaction one statement picks the first of the candidates (read before,
        # outside the lock) that is still free for the user, and only if the user is still active and
        # still holds no open item; None sends next_item to its general path.
        A5 = A.alias("a5")
        user_ok = select(U.c.id).where(U.c.id == uid, U.c.active == True).exists()  # noqa: E712
        user_busy = select(A5.c.id).where(A5.c.user_id == uid, A5.c.status == "active").exists()
        among = (select(P.c.id).where(P.c.id.in_(bindparam("cands", expanding=True)), ~mine, f < self.overlap,
                                      user_ok, ~user_busy)
                 .order_by(f.desc(), P.c.id).limit(1))
        # PostgreSQL: the user's row is locked first (one lease at a time per user) and prompts being
        # leased by others are passed over (SKIP LOCKED, so leases never wait on each other).
        self._q_candidate_among = among if self.is_sqlite else among.with_for_update(skip_locked=True, of=P)
        self._lock_user = select(U.c.id).where(U.c.id == uid).with_for_update()
        # submit: the assignment is marked done only if it is still the user's (not skipped) and the
        # user is still active; 0 rows updated = refused, and the transaction rolls back.
        self._upd_submit = (update(A).where(A.c.id == bindparam("b_aid"), A.c.status != "skipped",
                                             select(U.c.active).where(U.c.id == A.c.user_id).scalar_subquery() == True)  # noqa: E712
                            .values(status="done", finished_at=bindparam("b_now", type_=DateTime())))
        self._ins_assignment = insert(A)
        self._upd_assignment = update(A).where(A.c.id == bindparam("b_aid"))
        self._ins_ranking = insert(RK).returning(RK.c.id)
        self._ins_entries = insert(RankingEntry.__table__)

    def close(self) -> None:
        self.engine.dispose()
        self._nowait_write_engine.engine.dispose()

    # -- sessions -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as s:
            with s.begin():
                yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: all or nothing (SQLite: BEGIN IMMEDIATE; retried if the lock waits
        out the busy timeout, which only happens under extreme contention)."""
        # SQLite has one writer at a time. Threads of this process queue on a Python lock instead of
        # on SQLite's busy handler (which polls with sleeps of up to 100 ms: slow and unfair under
        # load); other processes still wait on the busy timeout.
        with self._write_lock:
            with self._write() as s:
                with s.begin():
                    yield s

    @contextlib.contextmanager
    def _rconn(self):
        """Reads on a Core connection for the hot paths: on SQLite without a transaction around them
        (each statement sees the latest commit; what they read together cannot disagree in a way
        that matters: immutable prompts and responses, a user's own rows), which saves a BEGIN and a
        COMMIT per call; never blocks writers under WAL. Elsewhere a read transaction."""
        with self._hot_read_engine.begin() as c:
            yield c

    @contextlib.contextmanager
    def _wconn(self):
        """A write transaction on a Core connection: all or nothing (SQLite: BEGIN IMMEDIATE, with
        this process's writers queued on a Python lock first, as in `write`). Inside `nowait()` on
        SQLite: WouldBlock instead of waiting, for the lock or for another process's writer."""
        if not (self.is_sqlite and self._nowait.get()):
            with self._write_lock:
                with self._write_engine.begin() as c:
                    yield c
            return
        if not self._write_lock.acquire(blocking=False):
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
            self._write_lock.release()

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

    def _lock(self, stmt):
        """SELECT ... FOR UPDATE where the database has row locks (SQLite already holds the write lock)."""
        return stmt if self.is_sqlite else stmt.with_for_update()

    # -- users ----------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str) -> int:
        name = (name or "").strip()
        if not USERNAME_RE.fullmatch(name):
            raise StoreError(f"user name must be 1-64 of the characters A-Z a-z 0-9 _ . @ -, got {name!r}")
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        pw_hash = hash_password(password)
        try:
            with self.write() as s:
                u = User(name=name, role=role, password_hash=pw_hash, active=True)
                s.add(u)
                s.flush()
                return u.id
        except IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def set_password(self, name: str, password: str) -> None:
        pw_hash = hash_password(password)
        with self.write() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise StoreError(f"no user named {name!r}")
            u.password_hash = pw_hash

    def set_active(self, name: str, active: bool) -> None:
        with self.write() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise StoreError(f"no user named {name!r}")
            u.active = active
            if not active:  # their open leases go back to the pool at once
                for a in s.scalars(select(Assignment).where(Assignment.user_id == u.id, Assignment.status == "active")):
                    a.status = "expired"

    def list_users(self) -> list[dict]:
        with self.read() as s:
            return [
                {"name": u.name, "role": u.role, "active": u.active, "created_at": u.created_at.isoformat(timespec="seconds")}
                for u in s.scalars(select(User).order_by(User.name))
            ]

    def authenticate(self, name: str, password: str) -> bool:
        """True for an active user with this password. Costs one scrypt either way."""
        with self.read() as s:
            u = s.scalar(select(User).where(User.name == (name or "").strip()))
            stored = u.password_hash if u is not None else _dummy_hash()
            ok = verify_password(password or "", stored)
            return bool(ok and u is not None and u.active)

    def user_info(self, name: str | None) -> dict:
        """{"name", "role", "ui_lang"} of an active user; AccessError otherwise."""
        with self.read() as s:
            u = self._active_user(s, name)
            return {"name": u.name, "role": u.role, "ui_lang": u.ui_lang}

    def set_ui_lang(self, name: str, lang: str) -> None:
        if lang not in ("en", "zh"):
            raise StoreError(f"ui language must be 'en' or 'zh', got {lang!r}")
        with self.write() as s:
            self._active_user(s, name).ui_lang = lang

    @staticmethod
    def _active_user(s: Session, name: str | None, lock: bool = False) -> User:
        if not name:
            raise AccessError("not logged in")
        u = s.scalar(select(User).where(User.name == name))
        if u is None or not u.active:
            raise AccessError(f"user {name!r} is unknown or disabled")
        return u

    def require_role(self, name: str | None, *roles: str) -> dict:
        info = self.user_info(name)
        if info["role"] not in roles:
            raise AccessError(f"this action needs the role {' or '.join(roles)}; {name!r} is {info['role']}")
        return info

    # -- prompts and responses --------------------------------------------------------------------
    def add_item(self, s: Session, row: dict, *, source: str = "", models: list[str] | None = None) -> bool:
        """Insert one validated item in an open write session; False if its id already exists."""
        if s.scalar(select(Prompt.id).where(Prompt.ext_id == row["id"])) is not None:
            return False
        p = Prompt(
            ext_id=row["id"], lang=row.get("lang") or "", category=row.get("category") or "",
            source=row.get("source") or source, prompt=row.get("prompt"), messages=row.get("messages"),
        )
        models = models or row.get("models") or [""] * len(row["responses"])
        p.responses = [Response(position=i, text=t, model=m or "") for i, (t, m) in enumerate(zip(row["responses"], models))]
        s.add(p)
        s.flush()
        return True

    def import_rows(self, rows: list[dict], *, source: str = "") -> tuple[int, int]:
        """Insert validated items (see io.validate_item) in one transaction: (added, already present)."""
        added = skipped = 0
        with self.write() as s:
            for row in rows:
                if self.add_item(s, row, source=source):
                    added += 1
                else:
                    skipped += 1
        return added, skipped

    def counts(self) -> dict:
        with self.read() as s:
            return {
                "users": s.scalar(select(func.count()).select_from(User)),
                "prompts": s.scalar(select(func.count()).select_from(Prompt)),
                "responses": s.scalar(select(func.count()).select_from(Response)),
                "rankings": s.scalar(select(func.count()).select_from(Ranking)),
                "reviews": s.scalar(select(func.count()).select_from(Review)),
            }

    # -- assignment -------------------------------------------------------------------------------
    def next_item(self, username: str | None) -> dict:
        """The user's current assignment, or a new one (lease renewed); {"item_id": None} when none is left.

        The hot path of the app: SQLAlchemy Core (no ORM objects), a few indexed statements per call,
        and as little as possible inside the write transaction (SQLite has one writer at a time, so
        its length bounds the app's throughput). An open assignment with more than half of its lease
        left is only read. A user with no open assignment is offered the shared candidate hint (the
        prompts with free slots, fullest first, ranked outside the write lock at most once a second);
        the write transaction picks the first one still free for this user in a single statement and
        leases it. Anything else (a lease to renew or expire, nothing free in the hint or in the
        user's own exact ranking) takes the general path, which decides everything inside the write
        transaction.
        """
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.lease_seconds)
        name = username or ""
        with self._rconn() as c:
            row = c.execute(self._q_open, {"name": name}).first()
            if row is None or not row.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            uid = row.uid
            if row.aid is not None and row.expires > now + dt.timedelta(seconds=self.lease_seconds / 2):
                return self._payload(c, uid, row.pid, row.expires)
            hint = self._candidate_hint(c, now) if row.aid is None else []
        leased = self._lease_candidate(uid, hint, now, expires) if hint else None
        if leased is None and row.aid is None:
            # Nothing in the shared hint is free for this user: rank the prompts for them exactly.
            self._hint_read_at = -math.inf
            with self._rconn() as c:
                own = list(c.scalars(self._q_candidates, {"uid": uid, "now": now, "n": 32}))
            leased = self._lease_candidate(uid, own, now, expires) if own else None
        return leased if leased is not None else self._next_item_locked(username, now, expires)

    def _candidate_hint(self, c, now: dt.datetime) -> list[int]:
        """Up to 64 prompts with free slots, fullest first, for any user. Ranking them scans every
        prompt, so the list is shared by all calls and read again at most every HINT_TTL_S seconds
        (or when it ran dry for someone); it is only a hint, re-checked inside the write transaction."""
        if time.monotonic() - self._hint_read_at > HINT_TTL_S:
            with self._hint_lock:
                if time.monotonic() - self._hint_read_at > HINT_TTL_S:
                    self._hint = list(c.scalars(self._q_hint, {"now": now}))
                    self._hint_read_at = time.monotonic()
        return self._hint

    def _lease_candidate(self, uid: int, candidates: list[int], now: dt.datetime, expires: dt.datetime) -> dict | None:
        """Lease the first of `candidates` still free for user `uid` in a short write transaction
        (on SQLite one picking statement and one insert, then the item's reads). Returns the
        next_item answer, or None to send the caller to the general path: user disabled or holding
        an item meanwhile, every candidate taken, or the user's own expired lease of the candidate."""
        try:
            with self._wconn() as c:
                if not self.is_sqlite:
                    c.execute(self._lock_user, {"uid": uid})
                pid = c.scalar(self._q_candidate_among, {"uid": uid, "now": now, "cands": candidates})
                if pid is None:
                    return None
                if not self.is_sqlite and c.scalar(self._q_filled, {"pid": pid, "now": now}) >= self.overlap:
                    return None  # filled by a transaction that committed after our snapshot
                c.execute(self._ins_assignment, {"prompt_id": pid, "user_id": uid, "status": "active", "leased_at": now,
                                                 "lease_expires_at": expires, "finished_at": None})
                return self._payload(c, uid, pid, expires)
        except IntegrityError:
            return None  # the user's expired lease of this prompt exists: the general path reuses it

    def _next_item_locked(self, username: str | None, now: dt.datetime, expires: dt.datetime) -> dict:
        """next_item deciding everything inside one write transaction (lease renewal/expiry, no
        candidates left, races); retried when PostgreSQL's SKIP LOCKED passes over busy prompts."""
        name = username or ""
        for attempt in range(50):
            try:
                with self._wconn() as c:
                    u = c.execute(self._q_user_w, {"name": name}).first()
                    if u is None or not u.active:
                        raise AccessError(f"user {username!r} is unknown or disabled")
                    uid = u.id
                    # 1. the open assignment, if its slot is still the user's
                    for a in c.execute(self._q_user_open, {"uid": uid}).all():
                        taken = c.scalar(self._q_taken_by_others, {"pid": a.prompt_id, "uid": uid, "now": now})
                        if a.lease_expires_at > now or taken < self.overlap:
                            c.execute(self._upd_assignment, {"b_aid": a.id, "lease_expires_at": expires})
                            return self._payload(c, uid, a.prompt_id, expires)
                        c.execute(self._upd_assignment, {"b_aid": a.id, "status": "expired"})
                    # 2. a new prompt: not seen by this user (expired leases may be retaken), slots free,
                    # the fullest first (so prompts complete), then the oldest
                    pid = c.scalar(self._q_candidate, {"uid": uid, "now": now})
                    if not self.is_sqlite:  # row locks: SKIP LOCKED passed over prompts being assigned now
                        if pid is None and c.scalar(self._q_any_candidate, {"uid": uid, "now": now}) is not None:
                            raise _Retry()  # candidates exist but are locked: try again
                        if pid is not None and c.scalar(self._q_filled, {"pid": pid, "now": now}) >= self.overlap:
                            raise _Retry()  # filled by a transaction that committed after our snapshot
                    if pid is None:
                        return {"item_id": None, "message": "no items left", "progress": self._progress_c(c, uid)}
                    aid = c.scalar(self._q_assignment_of, {"pid": pid, "uid": uid})
                    values = {"status": "active", "leased_at": now, "lease_expires_at": expires, "finished_at": None}
                    if aid is None:
                        c.execute(self._ins_assignment, {"prompt_id": pid, "user_id": uid, **values})
                    else:
                        c.execute(self._upd_assignment, {"b_aid": aid, **values})
                    return self._payload(c, uid, pid, expires)
            except (_Retry, IntegrityError):
                time.sleep(0.002 * (attempt + 1) * random.random())
                continue
        raise StoreError("could not assign an item (too much contention); please retry")

    def _payload(self, c, uid: int, pid: int, expires: dt.datetime) -> dict:
        """The next_item answer for prompt `pid` leased to user `uid` (Core reads on connection c)."""
        rows = c.execute(self._q_item, {"pid": pid}).all()  # the prompt, once per response
        p = rows[0]
        responses = [{"id": r.rid, "text": r.text} for r in rows if r.rid is not None]
        # Blind, per-annotator order (stable across reloads): position bias averages out.
        random.Random(f"{uid}:{pid}").shuffle(responses)
        return {
            "item_id": p.id, "ext_id": p.ext_id, "lang": p.lang, "category": p.category,
            "prompt": p.prompt, "messages": p.messages, "responses": responses,
            "lease_expires_at": expires.isoformat(timespec="seconds") + "Z",
            "progress": self._progress_c(c, uid),
        }

    def skip(self, username: str | None, item_id: Any) -> dict:
        """Give the item back: it is never offered to this user again; its slot returns to the pool."""
        pid = _as_item_id(item_id)
        with self.write() as s:
            user = self._active_user(s, username)
            a = s.scalar(self._lock(select(Assignment).where(Assignment.prompt_id == pid, Assignment.user_id == user.id)))
            if a is None or a.status == "skipped":
                raise AccessError(f"item {item_id!r} is not assigned to you")
            if a.status == "done":
                raise SubmissionError(f"item {item_id} is already submitted; it cannot be skipped")
            a.status, a.finished_at = "skipped", utcnow()
            return {"ok": True, "message": f"skipped item {pid}", "progress": self._progress(s, user)}

    # -- rankings -------------------------------------------------------------------------------
    def submit_ranking(self, username: str | None, item_id: Any, ranks: Any, flags: Any = None,
                       rationale: str = "", time_spent_s: float | None = None) -> dict:
        """Store one annotator's ranking of an item assigned to them.

        `ranks` maps response id -> rank (1 = best, ties share a rank; gaps are closed: 1,3,3 -> 1,2,2);
        `flags` maps response id -> list of FLAGS. A repeated submit of an item already submitted
        returns {"ok": True, "duplicate": True} and changes nothing. Raises SubmissionError/AccessError
        (nothing stored) for anything else that is wrong.
        """
        pid = _as_item_id(item_id)
        rationale = "" if rationale is None else rationale
        if not isinstance(rationale, str):
            raise SubmissionError("rationale must be text")
        if len(rationale) > MAX_RATIONALE_CHARS:
            raise SubmissionError(f"rationale is {len(rationale)} characters; at most {MAX_RATIONALE_CHARS} allowed")
        try:
            time_spent = None if time_spent_s is None else max(0.0, min(float(time_spent_s), 7 * 86400.0))
        except (TypeError, ValueError):
            raise SubmissionError(f"time_spent_s must be a number of seconds, got {time_spent_s!r}") from None
        # Phase 1 (read, no write lock): who, which assignment, already done?, validate.
        with self._rconn() as c:
            rows = c.execute(self._q_submit_ctx, {"name": username or "", "pid": pid}).all()
            row = rows[0] if rows else None
            if row is None or not row.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            uid = row.uid
            if row.aid is None or row.status == "skipped":
                raise AccessError(f"item {item_id!r} is not assigned to you")
            if row.rid is not None:
                return self._duplicate(c, uid, pid, row.rid)
            resp_ids = [r.resp_id for r in rows if r.resp_id is not None]
            rank_by_id, flags_by_id = _validate_ranking(resp_ids, ranks, flags)
        now = utcnow()
        if time_spent is None:  # measured on the server: from when the item was first leased
            time_spent = max(0.0, (now - row.leased_at).total_seconds())
        dense = dense_ranks([rank_by_id[i] for i in resp_ids])
        # Phase 2 (one short write transaction): the assignment marked done (only if still the user's
        # and the user still active), the ranking and its entries; all or nothing.
        try:
            with self._wconn() as c:
                if c.execute(self._upd_submit, {"b_aid": row.aid, "b_now": now}).rowcount != 1:
                    chk = c.execute(self._q_submit_check, {"aid": row.aid}).first()
                    if chk is not None and chk.status != "skipped" and not chk.active:
                        raise AccessError(f"user {username!r} is unknown or disabled")
                    raise AccessError(f"item {item_id!r} is not assigned to you")
                rid = c.execute(self._ins_ranking, {
                    "prompt_id": pid, "user_id": uid, "assignment_id": row.aid, "rationale": rationale,
                    "time_spent_s": time_spent, "created_at": now}).scalar_one()
                c.execute(self._ins_entries, [
                    {"ranking_id": rid, "response_id": i, "rank": k, "flags": ",".join(flags_by_id.get(i, ()))}
                    for i, k in zip(resp_ids, dense)])
                progress = self._progress_c(c, uid)  # inside: counts this ranking exactly
        except IntegrityError:
            # The unique (prompt, annotator) constraint: a concurrent identical submit won the race.
            with self._rconn() as c:
                existing = c.scalar(select(Ranking.id).where(Ranking.prompt_id == pid, Ranking.user_id == uid))
                if existing is None:
                    raise
                return self._duplicate(c, uid, pid, existing)
        return {"ok": True, "duplicate": False, "ranking_id": rid,
                "message": f"saved ranking of item {pid}", "progress": progress}

    def _duplicate(self, c, uid: int, pid: int, ranking_id: int) -> dict:
        return {"ok": True, "duplicate": True, "ranking_id": ranking_id,
                "message": f"item {pid} was already submitted; kept the first submission",
                "progress": self._progress_c(c, uid)}

    def _progress_c(self, c, uid: int) -> dict:
        rows = dict(c.execute(self._q_progress, {"uid": uid}).all())
        done, active = rows.get("done", 0), rows.get("active", 0)
        return {"done": done, "assigned": done + active, "skipped": rows.get("skipped", 0)}

    def _progress(self, s: Session, user: User) -> dict:
        rows = dict(s.execute(select(Assignment.status, func.count()).where(Assignment.user_id == user.id).group_by(Assignment.status)).all())
        done, active = rows.get("done", 0), rows.get("active", 0)
        return {"done": done, "assigned": done + active, "skipped": rows.get("skipped", 0)}

    def progress(self, username: str | None) -> dict:
        if not username:
            raise AccessError("not logged in")
        with self._rconn() as c:
            u = c.execute(select(User.id, User.active).where(User.name == username)).first()
            if u is None or not u.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            return self._progress_c(c, u.id)

    # -- reading rankings (review, export) --------------------------------------------------------
    def items_with_rankings(self, min_rankings: int = 1) -> list[dict]:
        """Every prompt with >= min_rankings rankings: its responses, each ranking and its review."""
        with self.read() as s:
            users = {u.id: u.name for u in s.scalars(select(User))}
            rows = s.execute(
                select(Ranking.prompt_id).group_by(Ranking.prompt_id).having(func.count(Ranking.id) >= min_rankings)
            ).scalars().all()
            out = []
            for chunk_start in range(0, len(rows), 500):
                chunk = rows[chunk_start:chunk_start + 500]
                prompts = {p.id: p for p in s.scalars(select(Prompt).where(Prompt.id.in_(chunk)))}
                rankings: dict[int, list[Ranking]] = {}
                for r in s.scalars(select(Ranking).where(Ranking.prompt_id.in_(chunk)).order_by(Ranking.id)):
                    rankings.setdefault(r.prompt_id, []).append(r)
                reviews = {rv.prompt_id: rv for rv in s.scalars(select(Review).where(Review.prompt_id.in_(chunk)))}
                for pid in chunk:
                    out.append(self._item_dict(prompts[pid], rankings.get(pid, []), reviews.get(pid), users))
            out.sort(key=lambda d: d["item_id"])
            return out

    def item_detail(self, item_id: Any) -> dict:
        pid = _as_item_id(item_id)
        with self.read() as s:
            p = s.get(Prompt, pid)
            if p is None:
                raise StoreError(f"no item {item_id!r}")
            users = {u.id: u.name for u in s.scalars(select(User))}
            rankings = list(s.scalars(select(Ranking).where(Ranking.prompt_id == pid).order_by(Ranking.id)))
            review = s.scalar(select(Review).where(Review.prompt_id == pid))
            return self._item_dict(p, rankings, review, users)

    @staticmethod
    def _item_dict(p: Prompt, rankings: list[Ranking], review: Review | None, users: dict[int, str]) -> dict:
        return {
            "item_id": p.id, "ext_id": p.ext_id, "lang": p.lang, "category": p.category, "source": p.source,
            "prompt": p.prompt, "messages": p.messages,
            "responses": [{"id": r.id, "text": r.text, "model": r.model} for r in p.responses],
            "rankings": [
                {
                    "annotator": users.get(r.user_id, "?"),
                    "ranks": {e.response_id: e.rank for e in r.entries},
                    "flags": {e.response_id: [f for f in e.flags.split(",") if f] for e in r.entries},
                    "rationale": r.rationale, "time_spent_s": r.time_spent_s,
                    "created_at": r.created_at.isoformat(timespec="seconds"),
                }
                for r in rankings
            ],
            "review": None if review is None else {
                "reviewer": users.get(review.reviewer_id, "?"),
                "ranks": {int(k): int(v) for k, v in review.ranks.items()}, "note": review.note,
            },
        }

    def adjudicate(self, reviewer: str | None, item_id: Any, ranks: Any, note: str = "") -> dict:
        """A reviewer's final ranking for an item (replaces an earlier adjudication)."""
        pid = _as_item_id(item_id)
        with self.write() as s:
            u = self._active_user(s, reviewer)
            if u.role not in ("reviewer", "admin"):
                raise AccessError(f"adjudication needs the role reviewer or admin; {reviewer!r} is {u.role}")
            if s.get(Prompt, pid) is None:
                raise StoreError(f"no item {item_id!r}")
            resp_ids = list(s.scalars(select(Response.id).where(Response.prompt_id == pid).order_by(Response.position)))
            rank_by_id, _ = _validate_ranking(resp_ids, ranks, None)
            dense = dense_ranks([rank_by_id[i] for i in resp_ids])
            payload = {str(i): k for i, k in zip(resp_ids, dense)}
            rv = s.scalar(select(Review).where(Review.prompt_id == pid))
            if rv is None:
                rv = Review(prompt_id=pid, reviewer_id=u.id, ranks=payload, note=note or "")
                s.add(rv)
            else:
                rv.reviewer_id, rv.ranks, rv.note, rv.updated_at = u.id, payload, note or "", utcnow()
            return {"ok": True, "message": f"adjudication of item {pid} saved"}

    def annotator_progress(self) -> list[dict]:
        with self.read() as s:
            out = []
            for u in s.scalars(select(User).order_by(User.name)):
                prog = self._progress(s, u)
                n = s.scalar(select(func.count()).select_from(Ranking).where(Ranking.user_id == u.id))
                avg_t = s.scalar(select(func.avg(Ranking.time_spent_s)).where(Ranking.user_id == u.id))
                out.append({"name": u.name, "role": u.role, "active": u.active, **prog, "rankings": n,
                            "mean_time_s": round(float(avg_t or 0.0), 1)})
            return out


class _Retry(Exception):
    pass


def _as_item_id(item_id: Any) -> int:
    try:
        if isinstance(item_id, bool):
            raise ValueError
        if isinstance(item_id, float) and not item_id.is_integer():
            raise ValueError
        return int(item_id)
    except (TypeError, ValueError):
        raise SubmissionError(f"item id must be an integer, got {item_id!r}") from None


def _validate_ranking(resp_ids: list[int], ranks: Any, flags: Any) -> tuple[dict[int, int], dict[int, list[str]]]:
    """Check ranks/flags against the item's response ids; return {id: rank}, {id: [flags]}."""
    n = len(resp_ids)
    known = set(resp_ids)
    if isinstance(ranks, list):
        raise SubmissionError("ranks must map response id -> rank, e.g. {\"17\": 1, \"18\": 2}, not a list")
    if not isinstance(ranks, dict) or not ranks:
        raise SubmissionError(f"ranks are missing: give a rank from 1 to {n} for each of the {n} responses")
    rank_by_id: dict[int, int] = {}
    unknown = []
    for k, v in ranks.items():
        try:
            rid = int(k)
        except (TypeError, ValueError):
            unknown.append(str(k))
            continue
        if rid not in known:
            unknown.append(str(k))
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or v in ("", None):
            raise SubmissionError(f"rank for response {rid} must be an integer from 1 to {n}, got {v!r}")
        try:
            fv = float(v)
        except ValueError:
            raise SubmissionError(f"rank for response {rid} must be an integer from 1 to {n}, got {v!r}") from None
        if not fv.is_integer() or not 1 <= fv <= n:
            raise SubmissionError(f"rank for response {rid} must be an integer from 1 to {n}, got {v!r}")
        rank_by_id[rid] = int(fv)
    if unknown:
        raise SubmissionError(f"unknown response id(s) for this item: {', '.join(unknown)}; expected {sorted(known)}")
    missing = [i for i in resp_ids if i not in rank_by_id]
    if missing:
        raise SubmissionError(f"missing rank for response(s) {missing}: every response needs a rank from 1 to {n}")
    flags_by_id: dict[int, list[str]] = {}
    if flags:
        if not isinstance(flags, dict):
            raise SubmissionError("flags must map response id -> list of flags")
        for k, v in flags.items():
            try:
                rid = int(k)
            except (TypeError, ValueError):
                rid = None
            if rid not in known:
                raise SubmissionError(f"flags name unknown response id {k!r}; expected one of {sorted(known)}")
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or any(f not in FLAGS for f in v):
                raise SubmissionError(f"flags for response {rid} must be a list from {list(FLAGS)}, got {v!r}")
            flags_by_id[rid] = sorted(set(v), key=FLAGS.index)
    return rank_by_id, flags_by_id


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
