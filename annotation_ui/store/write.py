"""Writing demonstrations: leases of write items, submit (with the judges' advice), skip, progress.

Each write item goes to `overlap` annotators (default 1). As for ranking, an annotator's open write
assignment comes back until submitted or skipped; a new one is the item with the most taken slots
below `overlap` that they have not seen. A demonstration is unique per (item, annotator): a submit
retried after a timeout returns the first one (`duplicate: True`), never a second row.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..advice import demonstration_warnings
from .engine import Database
from .errors import AccessError, StoreError, SubmissionError, as_item_id
from .schema import Demonstration, User, WriteAssignment, WriteItem, utcnow

MAX_DEMONSTRATION_CHARS = 20_000


class _Retry(Exception):
    pass


def _text(value: Any, field: str) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise SubmissionError(f"{field} must be text, got {type(value).__name__}")
    if len(value) > MAX_DEMONSTRATION_CHARS:
        raise SubmissionError(f"{field} is {len(value)} characters; at most {MAX_DEMONSTRATION_CHARS} allowed")
    return value


def prompt_text(prompt: str | None, messages: list | None) -> str | None:
    """The text the response answers: the prompt, or the last user turn of a conversation."""
    if prompt is not None:
        return prompt
    if messages:
        return messages[-1]["content"]
    return None


class Writer:
    """Leases write items and stores demonstrations. Thread-safe; one per store."""

    def __init__(self, db: Database, *, overlap: int = 1, lease_seconds: float = 1800.0):
        if overlap < 1:
            raise StoreError(f"write overlap must be >= 1, got {overlap}")
        self.db = db
        self.overlap = overlap
        self.lease_seconds = lease_seconds
        U, A, W, D = (t.__table__ for t in (User, WriteAssignment, WriteItem, Demonstration))
        name, iid, uid = bindparam("name"), bindparam("iid"), bindparam("uid")
        now = bindparam("now", type_=DateTime())
        self._q_open = (
            select(U.c.id.label("uid"), U.c.active, A.c.id.label("aid"), A.c.item_id, A.c.lease_expires_at)
            .select_from(U.outerjoin(A, and_(A.c.user_id == U.c.id, A.c.status == "active")))
            .where(U.c.name == name).order_by(A.c.id).limit(1))
        q = select(U.c.id, U.c.active).where(U.c.name == name)
        self._q_user_w = q if db.is_sqlite else q.with_for_update()
        self._q_user_open = (select(A.c.id, A.c.item_id, A.c.lease_expires_at)
                             .where(A.c.user_id == uid, A.c.status == "active").order_by(A.c.id))

        def filled(exclude_user: bool = False):
            A2 = A.alias("wa2")
            cond = [A2.c.item_id == W.c.id,
                    or_(A2.c.status == "done", and_(A2.c.status == "active", A2.c.lease_expires_at > now))]
            if exclude_user:
                cond.append(A2.c.user_id != uid)
            return select(func.count(A2.c.id)).where(*cond).scalar_subquery()

        self._q_taken_by_others = select(filled(exclude_user=True)).where(W.c.id == iid)
        A3 = A.alias("wa3")
        mine = select(A3.c.id).where(A3.c.item_id == W.c.id, A3.c.user_id == uid, A3.c.status != "expired").exists()
        f = filled()
        cand = select(W.c.id).where(~mine, f < self.overlap).order_by(f.desc(), W.c.id).limit(1)
        self._q_candidate = cand if db.is_sqlite else cand.with_for_update(skip_locked=True, of=W)
        self._q_any_candidate = select(W.c.id).where(~mine, f < self.overlap).limit(1)
        self._q_filled = select(f).where(W.c.id == iid)
        self._q_assignment_of = select(A.c.id).where(A.c.item_id == iid, A.c.user_id == uid)
        self._ins_assignment = insert(A)
        self._upd_assignment = update(A).where(A.c.id == bindparam("b_aid"))
        self._q_item = select(W.c.id, W.c.ext_id, W.c.lang, W.c.category, W.c.prompt, W.c.messages).where(W.c.id == iid)
        self._q_progress = select(A.c.status, func.count()).where(A.c.user_id == uid).group_by(A.c.status)
        self._q_submit_ctx = (
            select(U.c.id.label("uid"), U.c.active, A.c.id.label("aid"), A.c.status, A.c.leased_at,
                   D.c.id.label("did"), D.c.warnings, W.c.id.label("wid"), W.c.lang, W.c.category, W.c.prompt,
                   W.c.messages)
            .select_from(U.outerjoin(A, and_(A.c.user_id == U.c.id, A.c.item_id == iid))
                         .outerjoin(D, and_(D.c.user_id == U.c.id, D.c.item_id == iid))
                         .outerjoin(W, W.c.id == iid))
            .where(U.c.name == name))
        self._upd_submit = (update(A).where(A.c.id == bindparam("b_aid"), A.c.status != "skipped",
                                            select(U.c.active).where(U.c.id == A.c.user_id).scalar_subquery() == True)  # noqa: E712
                            .values(status="done", finished_at=bindparam("b_now", type_=DateTime())))
        self._ins_demo = insert(D).returning(D.c.id)

    # -- leases -----------------------------------------------------------------------------------
    def next_write_item(self, username: str | None) -> dict:
        """The user's open write assignment, or a new one: {"item_id", "ext_id", "lang", "category",
        "prompt", "messages", "write_prompt" (True: the annotator writes the prompt too),
        "lease_expires_at", "progress"}; {"item_id": None, ...} when none is left."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.lease_seconds)
        with self.db.rconn() as c:  # an open lease with more than half left is only read
            row = c.execute(self._q_open, {"name": username or ""}).first()
            if row is None or not row.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            if row.aid is not None and row.lease_expires_at > now + dt.timedelta(seconds=self.lease_seconds / 2):
                return self._payload(c, row.uid, row.item_id, row.lease_expires_at)
        for attempt in range(50):
            try:
                with self.db.wconn() as c:
                    return self._lease(c, username, now, expires)
            except (_Retry, IntegrityError):
                time.sleep(0.002 * (attempt + 1) * random.random())
        raise StoreError("could not assign an item (too much contention); please retry")

    def _lease(self, c, username: str | None, now: dt.datetime, expires: dt.datetime) -> dict:
        u = c.execute(self._q_user_w, {"name": username or ""}).first()
        if u is None or not u.active:
            raise AccessError(f"user {username!r} is unknown or disabled")
        uid = u.id
        for a in c.execute(self._q_user_open, {"uid": uid}).all():
            taken = c.scalar(self._q_taken_by_others, {"iid": a.item_id, "uid": uid, "now": now})
            if a.lease_expires_at > now or taken < self.overlap:
                c.execute(self._upd_assignment, {"b_aid": a.id, "lease_expires_at": expires})
                return self._payload(c, uid, a.item_id, expires)
            c.execute(self._upd_assignment, {"b_aid": a.id, "status": "expired"})
        iid = c.scalar(self._q_candidate, {"uid": uid, "now": now})
        if not self.db.is_sqlite:  # SKIP LOCKED passed over items being leased now; re-check after the lock
            if iid is None and c.scalar(self._q_any_candidate, {"uid": uid, "now": now}) is not None:
                raise _Retry()
            if iid is not None and c.scalar(self._q_filled, {"iid": iid, "now": now}) >= self.overlap:
                raise _Retry()
        if iid is None:
            return {"item_id": None, "message": "no items left", "progress": self._progress_c(c, uid)}
        values = {"status": "active", "leased_at": now, "lease_expires_at": expires, "finished_at": None}
        aid = c.scalar(self._q_assignment_of, {"iid": iid, "uid": uid})
        if aid is None:
            c.execute(self._ins_assignment, {"item_id": iid, "user_id": uid, **values})
        else:  # the user's own expired lease of this item
            c.execute(self._upd_assignment, {"b_aid": aid, **values})
        return self._payload(c, uid, iid, expires)

    def _payload(self, c, uid: int, iid: int, expires: dt.datetime) -> dict:
        w = c.execute(self._q_item, {"iid": iid}).first()
        return {"item_id": w.id, "ext_id": w.ext_id, "lang": w.lang, "category": w.category, "prompt": w.prompt,
                "messages": w.messages, "write_prompt": w.prompt is None and not w.messages,
                "lease_expires_at": expires.isoformat(timespec="seconds") + "Z",
                "progress": self._progress_c(c, uid)}

    def skip_write(self, username: str | None, item_id: Any) -> dict:
        """Give a write item back: never offered to this user again; its slot returns to the pool."""
        iid = as_item_id(item_id)
        with self.db.write() as s:
            u = s.execute(select(User.id, User.active).where(User.name == (username or ""))).first()
            if u is None or not u.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            a = s.scalar(self.db.lock(select(WriteAssignment).where(WriteAssignment.item_id == iid,
                                                                    WriteAssignment.user_id == u.id)))
            if a is None or a.status == "skipped":
                raise AccessError(f"item {item_id!r} is not assigned to you")
            if a.status == "done":
                raise SubmissionError(f"item {item_id} is already submitted; it cannot be skipped")
            a.status, a.finished_at = "skipped", utcnow()
        return {"ok": True, "message": f"skipped item {iid}", "progress": self.write_progress(username)}

    # -- demonstrations ---------------------------------------------------------------------------
    def submit_demonstration(self, username: str | None, item_id: Any, response: Any, prompt: Any = None,
                             time_spent_s: float | None = None) -> dict:
        """Store the user's demonstration for a write item assigned to them.

        `response` is the ideal response (for a conversation: the next assistant turn); `prompt` is
        required for an item without a prompt (the annotator writes it) and refused otherwise.
        Returns {"ok", "duplicate", "demonstration_id", "warnings", "message", "progress"}; the
        warnings (see annotation_ui.advice) never block the submit. A repeated submit returns the
        first demonstration with duplicate=True. SubmissionError/AccessError: nothing stored."""
        iid = as_item_id(item_id)
        response = _text(response, "response")
        prompt = _text(prompt, "prompt")
        try:
            time_spent = None if time_spent_s is None else max(0.0, min(float(time_spent_s), 7 * 86400.0))
        except (TypeError, ValueError):
            raise SubmissionError(f"time_spent_s must be a number of seconds, got {time_spent_s!r}") from None
        with self.db.rconn() as c:
            row = c.execute(self._q_submit_ctx, {"name": username or "", "iid": iid}).first()
            if row is None or not row.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            if row.aid is None or row.status == "skipped":
                raise AccessError(f"item {item_id!r} is not assigned to you")
            if row.did is not None:
                return self._duplicate(c, row.uid, iid, row.did, row.warnings)
        if not response.strip():
            raise SubmissionError("the response is empty: write the ideal response")
        writes_prompt = row.prompt is None and not row.messages
        if writes_prompt and not prompt.strip():
            raise SubmissionError("this item asks you to write the prompt too; the prompt is empty")
        if not writes_prompt and prompt.strip():
            raise SubmissionError(f"item {iid} has its prompt; send only the response")
        warnings = demonstration_warnings(response, lang=row.lang, prompt_text=prompt_text(row.prompt, row.messages),
                                          category=row.category, written_prompt=prompt if writes_prompt else None)
        now = utcnow()
        if time_spent is None:
            time_spent = max(0.0, (now - row.leased_at).total_seconds())
        try:
            with self.db.wconn() as c:
                if c.execute(self._upd_submit, {"b_aid": row.aid, "b_now": now}).rowcount != 1:
                    raise AccessError(f"item {item_id!r} is not assigned to you (or user {username!r} is disabled)")
                did = c.execute(self._ins_demo, {
                    "item_id": iid, "user_id": row.uid, "assignment_id": row.aid,
                    "prompt": prompt if writes_prompt else None, "response": response, "warnings": warnings,
                    "time_spent_s": time_spent, "created_at": now}).scalar_one()
                progress = self._progress_c(c, row.uid)
        except IntegrityError:  # the unique (item, annotator) constraint: a concurrent identical submit won
            with self.db.rconn() as c:
                existing = c.execute(select(Demonstration.id, Demonstration.warnings).where(
                    Demonstration.item_id == iid, Demonstration.user_id == row.uid)).first()
                if existing is None:
                    raise
                return self._duplicate(c, row.uid, iid, existing.id, existing.warnings)
        return {"ok": True, "duplicate": False, "demonstration_id": did, "warnings": warnings,
                "message": f"saved demonstration for item {iid}", "progress": progress}

    def _duplicate(self, c, uid: int, iid: int, did: int, warnings: list | None) -> dict:
        return {"ok": True, "duplicate": True, "demonstration_id": did, "warnings": warnings or [],
                "message": f"item {iid} was already submitted; kept the first submission",
                "progress": self._progress_c(c, uid)}

    def _progress_c(self, c, uid: int) -> dict:
        rows = dict(c.execute(self._q_progress, {"uid": uid}).all())
        done, active = rows.get("done", 0), rows.get("active", 0)
        return {"done": done, "assigned": done + active, "skipped": rows.get("skipped", 0)}

    def write_progress(self, username: str | None) -> dict:
        """The active user's write {done, assigned, skipped}; AccessError otherwise."""
        with self.db.rconn() as c:
            u = c.execute(select(User.id, User.active).where(User.name == (username or ""))).first()
            if u is None or not u.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            return self._progress_c(c, u.id)
