"""Reading rankings for review and export, a reviewer's adjudication, and per-user progress."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .assign import Assigner
from .engine import Database
from .errors import AccessError, StoreError, as_item_id
from .schema import Prompt, Ranking, Response, Review, User, utcnow
from .submit import dense_ranks, validate_ranking
from .users import active_user


class Reviews:
    def __init__(self, db: Database, assigner: Assigner):
        self.db = db
        self.assigner = assigner

    def items_with_rankings(self, min_rankings: int = 1) -> list[dict]:
        """Every prompt with >= min_rankings rankings: its responses, each ranking and its review."""
        with self.db.read() as s:
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
        pid = as_item_id(item_id)
        with self.db.read() as s:
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
        pid = as_item_id(item_id)
        with self.db.write() as s:
            u = active_user(s, reviewer)
            if u.role not in ("reviewer", "admin"):
                raise AccessError(f"adjudication needs the role reviewer or admin; {reviewer!r} is {u.role}")
            if s.get(Prompt, pid) is None:
                raise StoreError(f"no item {item_id!r}")
            resp_ids = list(s.scalars(select(Response.id).where(Response.prompt_id == pid).order_by(Response.position)))
            rank_by_id, _ = validate_ranking(resp_ids, ranks, None)
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
        with self.db.read() as s:
            out = []
            for u in s.scalars(select(User).order_by(User.name)):
                prog = self.assigner.progress_s(s, u)
                n = s.scalar(select(func.count()).select_from(Ranking).where(Ranking.user_id == u.id))
                avg_t = s.scalar(select(func.avg(Ranking.time_spent_s)).where(Ranking.user_id == u.id))
                out.append({"name": u.name, "role": u.role, "active": u.active, **prog, "rankings": n,
                            "mean_time_s": round(float(avg_t or 0.0), 1)})
            return out

