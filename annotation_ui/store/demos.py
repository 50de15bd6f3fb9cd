"""Reviewing demonstrations: listing, accept / edit / reject (edits kept beside the original, who
changed what), what is exportable, and counts per annotator and language.

A demonstration's status is its newest review's decision: "pending" (none yet), "accepted",
"edited" (the newest review holds the edited prompt/response) or "rejected". Reviews are only ever
added, so the full history (reviewer, decision, edited text, note, time) stays readable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .engine import Database
from .errors import AccessError, StoreError, SubmissionError, as_item_id
from .schema import REVIEW_DECISIONS, Demonstration, DemonstrationReview, User, WriteItem
from .users import active_user
from .write import MAX_DEMONSTRATION_CHARS

STATUS_OF_DECISION = {"accept": "accepted", "edit": "edited", "reject": "rejected"}
STATUSES = ("pending", "accepted", "edited", "rejected")


class Demos:
    def __init__(self, db: Database):
        self.db = db

    def _load(self, s, demo_ids: list[int] | None = None) -> list[dict]:
        users = {u.id: u.name for u in s.scalars(select(User))}
        q = select(Demonstration, WriteItem).join(WriteItem, WriteItem.id == Demonstration.item_id).order_by(Demonstration.id)
        if demo_ids is not None:
            q = q.where(Demonstration.id.in_(demo_ids))
        pairs = s.execute(q).all()
        rq = select(DemonstrationReview).order_by(DemonstrationReview.id)
        if demo_ids is not None:
            rq = rq.where(DemonstrationReview.demonstration_id.in_(demo_ids))
        reviews: dict[int, list] = {}
        for r in s.scalars(rq):
            reviews.setdefault(r.demonstration_id, []).append({
                "reviewer": users.get(r.reviewer_id, "?"), "decision": r.decision, "prompt": r.prompt,
                "response": r.response, "note": r.note, "created_at": r.created_at.isoformat(timespec="seconds")})
        out = []
        for d, w in pairs:
            history = reviews.get(d.id, [])
            last = history[-1] if history else None
            original_prompt = d.prompt if d.prompt is not None else w.prompt
            final_prompt, final_response = original_prompt, d.response
            if last is not None and last["decision"] == "edit":
                final_prompt = last["prompt"] if last["prompt"] is not None else original_prompt
                final_response = last["response"] if last["response"] is not None else d.response
            out.append({
                "id": d.id, "item_id": w.id, "ext_id": w.ext_id, "lang": w.lang, "category": w.category,
                "annotator": users.get(d.user_id, "?"), "item_prompt": w.prompt, "messages": w.messages,
                "written_prompt": d.prompt, "response": d.response, "warnings": d.warnings or [],
                "time_spent_s": d.time_spent_s, "created_at": d.created_at.isoformat(timespec="seconds"),
                "status": "pending" if last is None else STATUS_OF_DECISION[last["decision"]],
                "reviews": history, "final_prompt": final_prompt, "final_response": final_response,
            })
        return out

    def demonstrations(self, status: str | None = None) -> list[dict]:
        """Every demonstration (oldest first), or those with `status` (pending/accepted/edited/rejected)."""
        if status is not None and status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self.db.read() as s:
            rows = self._load(s)
        return [r for r in rows if status is None or r["status"] == status]

    def demonstration_detail(self, demonstration_id: Any) -> dict:
        did = as_item_id(demonstration_id)
        with self.db.read() as s:
            rows = self._load(s, [did])
        if not rows:
            raise StoreError(f"no demonstration {demonstration_id!r}")
        return rows[0]

    def review_demonstration(self, reviewer: str | None, demonstration_id: Any, decision: str,
                             prompt: Any = None, response: Any = None, note: str = "") -> dict:
        """A reviewer's (or admin's) decision: "accept", "reject", or "edit" with the edited response
        (and prompt, for a prompt the annotator wrote). The original stays untouched; the edit is
        stored beside it with the reviewer's name. AccessError for other roles; SubmissionError
        for an edit that changes nothing or empties a text."""
        did = as_item_id(demonstration_id)
        if decision not in REVIEW_DECISIONS:
            raise SubmissionError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}, got {decision!r}")
        for field, v in (("prompt", prompt), ("response", response), ("note", note)):
            if v is not None and not isinstance(v, str):
                raise SubmissionError(f"{field} must be text")
            if v is not None and len(v) > MAX_DEMONSTRATION_CHARS:
                raise SubmissionError(f"{field} is {len(v)} characters; at most {MAX_DEMONSTRATION_CHARS} allowed")
        with self.db.write() as s:
            u = active_user(s, reviewer)
            if u.role not in ("reviewer", "admin"):
                raise AccessError(f"reviewing demonstrations needs the role reviewer or admin; {reviewer!r} is {u.role}")
            d = s.get(Demonstration, did)
            if d is None:
                raise StoreError(f"no demonstration {demonstration_id!r}")
            new_prompt = new_response = None
            if decision == "edit":
                if response is not None and response != d.response:
                    if not response.strip():
                        raise SubmissionError("the edited response is empty; reject the demonstration instead")
                    new_response = response
                if prompt is not None and d.prompt is not None and prompt != d.prompt:
                    if not prompt.strip():
                        raise SubmissionError("the edited prompt is empty")
                    new_prompt = prompt
                elif prompt is not None and d.prompt is None and prompt.strip():
                    w = s.get(WriteItem, d.item_id)
                    if prompt != (w.prompt or ""):
                        raise SubmissionError("only a prompt the annotator wrote can be edited; this one was imported")
                if new_prompt is None and new_response is None:
                    raise SubmissionError("the edit changes nothing; accept the demonstration instead")
            s.add(DemonstrationReview(demonstration_id=did, reviewer_id=u.id, decision=decision, prompt=new_prompt,
                                      response=new_response, note=note or ""))
        status = STATUS_OF_DECISION[decision]
        return {"ok": True, "status": status, "message": f"demonstration {did} {status}"}

    def exportable(self) -> list[dict]:
        """Accepted or reviewer-edited demonstrations (oldest first), with their final texts."""
        return [d for d in self.demonstrations() if d["status"] in ("accepted", "edited")]

    def demonstration_counts(self) -> list[dict]:
        """Per (annotator, language): demonstrations written, and how many are pending, accepted,
        edited, rejected, and carried a warning at submit."""
        table: dict[tuple[str, str], dict] = {}
        for d in self.demonstrations():
            row = table.setdefault((d["annotator"], d["lang"]), {
                "annotator": d["annotator"], "lang": d["lang"], "written": 0, "warned": 0,
                **{k: 0 for k in STATUSES}})
            row["written"] += 1
            row[d["status"]] += 1
            row["warned"] += bool(d["warnings"])
        return [table[k] for k in sorted(table)]
