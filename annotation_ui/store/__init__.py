"""The annotation store: one `Store` facade over modules with one job each.

    errors    StoreError, SubmissionError, AccessError, WouldBlock
    auth      scrypt password hashing
    schema    the ORM models (newest Alembic revision) and vocabularies
    engine    engines, SQLite PRAGMAs and BEGIN IMMEDIATE, transactions, nowait, migrations
    users     accounts, roles, login checks
    items     importing items to rank and to write for; counts
    assign    leases of items to rank, skip, progress
    submit    rankings: validation and the all-or-nothing write
    review    reading rankings, adjudication, per-user progress
    write     leases of items to write for, demonstrations (submit, skip, progress)
    demos     reviewing demonstrations (accept / edit / reject), their export, per-language counts

SQLAlchemy 2.x over any SQLAlchemy URL; SQLite (`sqlite:///annotations.db`) is the default and
PostgreSQL is tested. `Store(url)` upgrades an older database in place to the newest revision.

Invariants the database itself enforces (so no code path can break them):
- one ranking per (prompt, annotator) and one demonstration per (write item, annotator): a repeated
  submit returns the stored one, never a second row;
- one assignment per (item, annotator): an item never goes twice to the same annotator;
- a ranking's entries are written in the same transaction as the ranking and its assignment update.

Failures are `StoreError` (or a subclass) with a message meant for the person who caused it;
nothing is written when one is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .assign import HINT_TTL_S, Assigner
from .auth import hash_password, verify_password
from .demos import Demos
from .engine import (
    DEFAULT_URL, MIGRATIONS_DIR, Database, current_revision, env_url, head_revision, make_engine,
    sqlite_integrity_check, upgrade,
)
from .errors import AccessError, StoreError, SubmissionError, WouldBlock
from .items import MAX_RESPONSES, Items
from .review import Reviews
from .schema import (
    ASSIGNMENT_STATUSES, FLAGS, REVIEW_DECISIONS, ROLES, Assignment, Base, Demonstration, DemonstrationReview,
    Prompt, Ranking, RankingEntry, Response, Review, User, WriteAssignment, WriteItem, utcnow,
)
from .submit import MAX_RATIONALE_CHARS, Submitter, dense_ranks
from .users import USERNAME_RE, Users
from .write import MAX_DEMONSTRATION_CHARS, Writer

__all__ = [
    "ASSIGNMENT_STATUSES", "AccessError", "Assignment", "Base", "DEFAULT_URL", "Demonstration", "DemonstrationReview",
    "FLAGS", "HINT_TTL_S", "MAX_DEMONSTRATION_CHARS", "MAX_RATIONALE_CHARS", "MAX_RESPONSES", "MIGRATIONS_DIR",
    "Prompt", "REVIEW_DECISIONS", "ROLES", "Ranking", "RankingEntry", "Response", "Review", "Store", "StoreConfig",
    "StoreError", "SubmissionError", "USERNAME_RE", "User", "WouldBlock", "WriteAssignment", "WriteItem",
    "current_revision", "dense_ranks", "env_url", "hash_password", "head_revision", "make_engine",
    "sqlite_integrity_check", "upgrade", "utcnow", "verify_password",
]


@dataclass
class StoreConfig:
    url: str = DEFAULT_URL
    """SQLAlchemy URL of the database (SQLite file by default; any SQLAlchemy URL works)."""
    overlap: int = 3
    """k: how many different annotators rank each prompt."""
    lease_seconds: float = 1800.0
    """An assignment not submitted within this time returns to the pool for others."""
    write_overlap: int = 1
    """How many different annotators write a demonstration for each write item."""


class Store:
    """All reads and writes of the annotation database. Thread-safe; share one per process.

    A facade: each method hands the call to the component that does that one job."""

    def __init__(self, url: str = DEFAULT_URL, *, overlap: int = 3, lease_seconds: float = 1800.0,
                 write_overlap: int = 1, migrate: bool = True, engine_kwargs: dict | None = None):
        if overlap < 1:
            raise StoreError(f"overlap must be >= 1, got {overlap}")
        self.db = Database(url, engine_kwargs)
        self.users = Users(self.db)
        self.items = Items(self.db)
        self.assigner = Assigner(self.db, overlap=overlap, lease_seconds=lease_seconds)
        self.submitter = Submitter(self.db, self.assigner)
        self.reviews = Reviews(self.db, self.assigner)
        self.writer = Writer(self.db, overlap=write_overlap, lease_seconds=lease_seconds)
        self.demos = Demos(self.db)
        if migrate:
            upgrade(self.db.engine)

    # -- the database -----------------------------------------------------------------------------
    url = property(lambda self: self.db.url)
    engine = property(lambda self: self.db.engine)
    is_sqlite = property(lambda self: self.db.is_sqlite)
    overlap = property(lambda self: self.assigner.overlap)
    lease_seconds = property(lambda self: self.assigner.lease_seconds)
    write_overlap = property(lambda self: self.writer.overlap)
    _write_lock = property(lambda self: self.db.write_lock)

    def close(self) -> None:
        self.db.close()

    def read(self):
        """An ORM session in a read transaction (context manager)."""
        return self.db.read()

    def write(self):
        """An ORM session in a write transaction, all or nothing (context manager)."""
        return self.db.write()

    def nowait(self):
        """Inside: a SQLite write that would wait raises WouldBlock with nothing written (context manager)."""
        return self.db.nowait()

    # -- users ------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str) -> int:
        return self.users.add_user(name, role, password)

    def set_password(self, name: str, password: str) -> None:
        self.users.set_password(name, password)

    def set_active(self, name: str, active: bool) -> None:
        self.users.set_active(name, active)

    def list_users(self) -> list[dict]:
        return self.users.list_users()

    def authenticate(self, name: str, password: str) -> bool:
        return self.users.authenticate(name, password)

    def user_info(self, name: str | None) -> dict:
        return self.users.user_info(name)

    def set_ui_lang(self, name: str, lang: str) -> None:
        self.users.set_ui_lang(name, lang)

    def require_role(self, name: str | None, *roles: str) -> dict:
        return self.users.require_role(name, *roles)

    # -- items ------------------------------------------------------------------------------------
    def import_rows(self, rows: list[dict], *, source: str = "") -> tuple[int, int]:
        return self.items.import_rows(rows, source=source)

    def counts(self) -> dict:
        return self.items.counts()

    # -- ranking ----------------------------------------------------------------------------------
    def next_item(self, username: str | None) -> dict:
        return self.assigner.next_item(username)

    def skip(self, username: str | None, item_id: Any) -> dict:
        return self.assigner.skip(username, item_id)

    def progress(self, username: str | None) -> dict:
        return self.assigner.progress(username)

    def submit_ranking(self, username: str | None, item_id: Any, ranks: Any, flags: Any = None,
                       rationale: str = "", time_spent_s: float | None = None) -> dict:
        return self.submitter.submit_ranking(username, item_id, ranks, flags, rationale, time_spent_s)

    def items_with_rankings(self, min_rankings: int = 1) -> list[dict]:
        return self.reviews.items_with_rankings(min_rankings)

    def item_detail(self, item_id: Any) -> dict:
        return self.reviews.item_detail(item_id)

    def adjudicate(self, reviewer: str | None, item_id: Any, ranks: Any, note: str = "") -> dict:
        return self.reviews.adjudicate(reviewer, item_id, ranks, note)

    def annotator_progress(self) -> list[dict]:
        return self.reviews.annotator_progress()

    # -- writing ----------------------------------------------------------------------------------
    def next_write_item(self, username: str | None) -> dict:
        return self.writer.next_write_item(username)

    def skip_write(self, username: str | None, item_id: Any) -> dict:
        return self.writer.skip_write(username, item_id)

    def write_progress(self, username: str | None) -> dict:
        return self.writer.write_progress(username)

    def submit_demonstration(self, username: str | None, item_id: Any, response: Any, prompt: Any = None,
                             time_spent_s: float | None = None) -> dict:
        return self.writer.submit_demonstration(username, item_id, response, prompt, time_spent_s)

    def demonstrations(self, status: str | None = None) -> list[dict]:
        return self.demos.demonstrations(status)

    def demonstration_detail(self, demonstration_id: Any) -> dict:
        return self.demos.demonstration_detail(demonstration_id)

    def review_demonstration(self, reviewer: str | None, demonstration_id: Any, decision: str,
                             prompt: Any = None, response: Any = None, note: str = "") -> dict:
        return self.demos.review_demonstration(reviewer, demonstration_id, decision, prompt, response, note)

    def demonstration_counts(self) -> list[dict]:
        return self.demos.demonstration_counts()

    def exportable_demonstrations(self) -> list[dict]:
        return self.demos.exportable()
