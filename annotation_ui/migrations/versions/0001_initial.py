"""Initial schema: users, prompts, responses, assignments, rankings, ranking entries.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("role IN ('annotator', 'reviewer', 'admin')", name="ck_users_role"),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ext_id", sa.String(256), nullable=False, unique=True),
        sa.Column("lang", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("messages", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("prompt_id", "position", name="uq_responses_prompt_position"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("leased_at", sa.DateTime, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("prompt_id", "user_id", name="uq_assignments_prompt_user"),
        sa.CheckConstraint("status IN ('active', 'done', 'skipped', 'expired')", name="ck_assignments_status"),
    )
    op.create_index("ix_assignments_prompt_status", "assignments", ["prompt_id", "status"])
    op.create_index("ix_assignments_user_status", "assignments", ["user_id", "status"])
    op.create_table(
        "rankings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id", ondelete="SET NULL"), nullable=True),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("time_spent_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("prompt_id", "user_id", name="uq_rankings_prompt_user"),
    )
    op.create_table(
        "ranking_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ranking_id", sa.Integer, sa.ForeignKey("rankings.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("response_id", sa.Integer, sa.ForeignKey("responses.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("flags", sa.String(256), nullable=False),
        sa.UniqueConstraint("ranking_id", "response_id", name="uq_ranking_entries_ranking_response"),
        sa.CheckConstraint("rank >= 1", name="ck_ranking_entries_rank"),
    )


def downgrade() -> None:
    for t in ("ranking_entries", "rankings", "assignments", "responses", "prompts", "users"):
        op.drop_table(t)
