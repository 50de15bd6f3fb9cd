"""Items: adding validated import rows (to rank or to write for) and counting what the store holds."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .engine import Database
from .errors import StoreError
from .schema import (
    Demonstration, DemonstrationReview, Prompt, Ranking, Response, Review, User, WriteItem,
)

MAX_RESPONSES = 6
"""The most responses one item to rank may have: the app shows this many side by side (A-F), and an
item with more could be leased but never ranked. Import refuses such items."""


def add_rank_item(s: Session, row: dict, *, source: str = "", models: list[str] | None = None) -> bool:
    """Insert one validated item to rank in an open write session; False if its id already exists.
    StoreError (naming the id) for more than MAX_RESPONSES responses."""
    if len(row["responses"]) > MAX_RESPONSES:
        raise StoreError(f"item {row['id']!r} has {len(row['responses'])} responses; the app shows at most "
                         f"{MAX_RESPONSES}, so it could never be ranked")
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


def add_write_item(s: Session, row: dict, *, source: str = "") -> bool:
    """Insert one validated item to write for (a row without responses); False if its id exists."""
    if s.scalar(select(WriteItem.id).where(WriteItem.ext_id == row["id"])) is not None:
        return False
    s.add(WriteItem(ext_id=row["id"], lang=row["lang"], category=row.get("category") or "",
                    source=row.get("source") or source, prompt=row.get("prompt"), messages=row.get("messages")))
    s.flush()
    return True


class Items:
    def __init__(self, db: Database):
        self.db = db

    def import_rows(self, rows: list[dict], *, source: str = "") -> tuple[int, int]:
        """Insert validated rows (see io.validate_item) in one transaction, all or nothing: rows with
        responses become items to rank, rows without become items to write for. (added, already present)."""
        added = skipped = 0
        with self.db.write() as s:
            for row in rows:
                new = (add_rank_item(s, row, source=source) if "responses" in row
                       else add_write_item(s, row, source=source))
                added, skipped = added + new, skipped + (not new)
        return added, skipped

    def counts(self) -> dict:
        tables = {"users": User, "prompts": Prompt, "responses": Response, "rankings": Ranking, "reviews": Review,
                  "write_items": WriteItem, "demonstrations": Demonstration,
                  "demonstration_reviews": DemonstrationReview}
        with self.db.read() as s:
            return {k: s.scalar(select(func.count()).select_from(t)) for k, t in tables.items()}
