"""Assignment of items to rank: leases, their renewal and expiry, skip, and each user's progress.

Each prompt is ranked by k (`overlap`) different annotators; the database's unique (prompt,
annotator) assignment means an item never goes twice to the same annotator. An annotator's open
assignment comes back until submitted or skipped (its lease renewed when less than half is left);
a new one is the prompt with the most taken slots (done, or leased and unexpired) below k that
this annotator has not done or skipped. Expired leases free the slot.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .engine import Database
from .errors import AccessError, StoreError, SubmissionError, as_item_id
from .schema import Assignment, Prompt, Response, User, utcnow
from .users import active_user

HINT_TTL_S = 1.0  # how long next_item's shared candidate list is reused


class _Retry(Exception):
    pass


class Assigner:
    """Leases items to rank. Thread-safe; one per store."""

    def __init__(self, db: Database, *, overlap: int = 3, lease_seconds: float = 1800.0):
        if overlap < 1:
            raise StoreError(f"overlap must be >= 1, got {overlap}")
        self.db = db
        self.overlap = overlap
        self.lease_seconds = lease_seconds
        self._prepare_statements()
        self._hint: list[int] = []
        self._hint_read_at = -math.inf
        self._hint_lock = threading.Lock()

    def _prepare_statements(self) -> None:
        """The hot-path statements, built once (SQLAlchemy caches their compiled form)."""
        U, A, P, R = (t.__table__ for t in (User, Assignment, Prompt, Response))
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
        now, uid = bindparam("now", type_=DateTime()), bindparam("uid")
        q = select(U.c.id, U.c.active).where(U.c.name == name)
        self._q_user_w = q if self.db.is_sqlite else q.with_for_update()
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
        self._q_candidate = cand if self.db.is_sqlite else cand.with_for_update(skip_locked=True, of=P)
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
        self._q_candidate_among = among if self.db.is_sqlite else among.with_for_update(skip_locked=True, of=P)
        self._lock_user = select(U.c.id).where(U.c.id == uid).with_for_update()
        self._ins_assignment = insert(A)
        self._upd_assignment = update(A).where(A.c.id == bindparam("b_aid"))

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
        with self.db.rconn() as c:
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
            with self.db.rconn() as c:
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
            with self.db.wconn() as c:
                if not self.db.is_sqlite:
                    c.execute(self._lock_user, {"uid": uid})
                pid = c.scalar(self._q_candidate_among, {"uid": uid, "now": now, "cands": candidates})
                if pid is None:
                    return None
                if not self.db.is_sqlite and c.scalar(self._q_filled, {"pid": pid, "now": now}) >= self.overlap:
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
                with self.db.wconn() as c:
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
                    if not self.db.is_sqlite:  # row locks: SKIP LOCKED passed over prompts being assigned now
                        if pid is None and c.scalar(self._q_any_candidate, {"uid": uid, "now": now}) is not None:
                            raise _Retry()  # candidates exist but are locked: try again
                        if pid is not None and c.scalar(self._q_filled, {"pid": pid, "now": now}) >= self.overlap:
                            raise _Retry()  # filled by a transaction that committed after our snapshot
                    if pid is None:
                        return {"item_id": None, "message": "no items left", "progress": self.progress_c(c, uid)}
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
            "progress": self.progress_c(c, uid),
        }

    def skip(self, username: str | None, item_id: Any) -> dict:
        """Give the item back: it is never offered to this user again; its slot returns to the pool."""
        pid = as_item_id(item_id)
        with self.db.write() as s:
            user = active_user(s, username)
            a = s.scalar(self.db.lock(select(Assignment).where(Assignment.prompt_id == pid, Assignment.user_id == user.id)))
            if a is None or a.status == "skipped":
                raise AccessError(f"item {item_id!r} is not assigned to you")
            if a.status == "done":
                raise SubmissionError(f"item {item_id} is already submitted; it cannot be skipped")
            a.status, a.finished_at = "skipped", utcnow()
            return {"ok": True, "message": f"skipped item {pid}", "progress": self.progress_s(s, user)}

    def progress_c(self, c, uid: int) -> dict:
        """{done, assigned, skipped} of user `uid` read on Core connection `c`."""
        rows = dict(c.execute(self._q_progress, {"uid": uid}).all())
        done, active = rows.get("done", 0), rows.get("active", 0)
        return {"done": done, "assigned": done + active, "skipped": rows.get("skipped", 0)}

    def progress_s(self, s: Session, user: User) -> dict:
        """progress_c in an ORM session."""
        rows = dict(s.execute(select(Assignment.status, func.count()).where(Assignment.user_id == user.id).group_by(Assignment.status)).all())
        done, active = rows.get("done", 0), rows.get("active", 0)
        return {"done": done, "assigned": done + active, "skipped": rows.get("skipped", 0)}

    def progress(self, username: str | None) -> dict:
        """The active user's {done, assigned, skipped}; AccessError otherwise."""
        if not username:
            raise AccessError("not logged in")
        with self.db.rconn() as c:
            u = c.execute(select(User.id, User.active).where(User.name == username)).first()
            if u is None or not u.active:
                raise AccessError(f"user {username!r} is unknown or disabled")
            return self.progress_c(c, u.id)

