"""The database schema as SQLAlchemy ORM models (the newest Alembic revision; how each revision was
built is in annotation_ui/migrations/versions/), and the vocabularies the database checks.

Ranking: users, prompts, responses, assignments, rankings, ranking_entries, reviews.
Writing (revision 0003): write_items (a prompt to answer, or a language and category to write a
prompt for), write_assignments (leases, as for ranking), demonstrations (one annotator's written
response, and prompt when they wrote it; the judges' warnings at submit), demonstration_reviews
(append-only: each reviewer's accept / edit / reject, an edit kept beside the original).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("annotator", "reviewer", "admin")
FLAGS = ("harmful", "needless_refusal", "language_mixing", "factual_error", "unhelpful")
ASSIGNMENT_STATUSES = ("active", "done", "skipped", "expired")
REVIEW_DECISIONS = ("accept", "edit", "reject")
WRITE_LANGS = ("en", "zh")


def utcnow() -> dt.datetime:
    """Naive UTC timestamps: compared identically by SQLite (as text) and PostgreSQL."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


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



class WriteItem(Base):
    """A prompt to write the ideal response to (`prompt`, or `messages` ending with a user turn), or,
    with neither, a request to write a prompt in `lang` for `category` and then its response."""

    __tablename__ = "write_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(256), unique=True, nullable=False)
    lang: Mapped[str] = mapped_column(String(16), nullable=False)
    category: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    source: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    messages: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class WriteAssignment(Base):
    __tablename__ = "write_assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_write_assignments_item_user"),
        CheckConstraint("status IN ('active', 'done', 'skipped', 'expired')", name="ck_write_assignments_status"),
        Index("ix_write_assignments_item_status", "item_id", "status"),
        Index("ix_write_assignments_user_status", "user_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("write_items.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    leased_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    lease_expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Demonstration(Base):
    """One annotator's demonstration for one write item: unique per (item, annotator), so a retried
    submit can never store a second one."""

    __tablename__ = "demonstrations"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_demonstrations_item_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("write_items.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("write_assignments.id", ondelete="SET NULL"), nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)  # written by the annotator (items without one)
    response: Mapped[str] = mapped_column(Text, nullable=False)
    warnings: Mapped[list] = mapped_column(JSON, nullable=False, default=list)  # the judges' advice at submit
    time_spent_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class DemonstrationReview(Base):
    """A reviewer's decision on a demonstration; rows are only added, the newest one counts. An edit
    holds the edited prompt/response here, beside the untouched original."""

    __tablename__ = "demonstration_reviews"
    __table_args__ = (CheckConstraint("decision IN ('accept', 'edit', 'reject')", name="ck_demonstration_reviews_decision"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    demonstration_id: Mapped[int] = mapped_column(ForeignKey("demonstrations.id", ondelete="CASCADE"), nullable=False, index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
