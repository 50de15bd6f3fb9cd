"""Writing demonstrations: write items, their leases, demonstrations and their reviews.

Revision ID: 0003
Revises: 0002

Only new tables: the ranking tables are not touched, so an upgrade keeps every ranking as it was.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_items",
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
        "write_assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("write_items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("leased_at", sa.DateTime, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("item_id", "user_id", name="uq_write_assignments_item_user"),
        sa.CheckConstraint("status IN ('active', 'done', 'skipped', 'expired')", name="ck_write_assignments_status"),
    )
    op.create_index("ix_write_assignments_item_status", "write_assignments", ["item_id", "status"])
    op.create_index("ix_write_assignments_user_status", "write_assignments", ["user_id", "status"])
    op.create_table(
        "demonstrations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("write_items.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("write_assignments.id", ondelete="SET NULL"), nullable=True),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("time_spent_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("item_id", "user_id", name="uq_demonstrations_item_user"),
    )
    op.create_table(
        "demonstration_reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("demonstration_id", sa.Integer, sa.ForeignKey("demonstrations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("decision IN ('accept', 'edit', 'reject')", name="ck_demonstration_reviews_decision"),
    )


def downgrade() -> None:
    for t in ("demonstration_reviews", "demonstrations", "write_assignments", "write_items"):
        op.drop_table(t)
