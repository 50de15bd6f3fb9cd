"""Submitting rankings: validation of ranks and flags, and one short all-or-nothing write.

A repeated submit of an item already submitted returns the first ranking (`duplicate: True`); the
unique (prompt, annotator) constraint makes that hold even for two identical submits racing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from .assign import Assigner
from .engine import Database
from .errors import AccessError, SubmissionError, as_item_id
from .schema import FLAGS, Assignment, Ranking, RankingEntry, Response, User, utcnow

MAX_RATIONALE_CHARS = 20_000


def dense_ranks(ranks: list[int]) -> list[int]:
    """[1, 3, 3, 4] -> [1, 2, 2, 3]: same order and ties, no gaps."""
    order = {v: i + 1 for i, v in enumerate(sorted(set(ranks)))}
    return [order[r] for r in ranks]


class Submitter:
    """Stores rankings. Thread-safe; one per store."""

    def __init__(self, db: Database, assigner: Assigner):
        self.db = db
        self.assigner = assigner
        U, A, R, RK = (t.__table__ for t in (User, Assignment, Response, Ranking))
        name, pid = bindparam("name"), bindparam("pid")
        self._q_submit_ctx = (  # one row per response of the prompt (its id in resp_id)
            select(U.c.id.label("uid"), U.c.active, A.c.id.label("aid"), A.c.status, A.c.leased_at, RK.c.id.label("rid"),
                   R.c.id.label("resp_id"))
            .select_from(U.outerjoin(A, and_(A.c.user_id == U.c.id, A.c.prompt_id == pid))
                         .outerjoin(RK, and_(RK.c.user_id == U.c.id, RK.c.prompt_id == pid))
                         .outerjoin(R, R.c.prompt_id == pid))
            .where(U.c.name == name).order_by(R.c.position))
        self._q_submit_check = (select(A.c.status, U.c.active).select_from(A.join(U, U.c.id == A.c.user_id))
                                .where(A.c.id == bindparam("aid")))
        # submit: the assignment is marked done only if it is still the user's (not skipped) and the
        # user is still active; 0 rows updated = refused, and the transaction rolls back.
        self._upd_submit = (update(A).where(A.c.id == bindparam("b_aid"), A.c.status != "skipped",
                                             select(U.c.active).where(U.c.id == A.c.user_id).scalar_subquery() == True)  # noqa: E712
                            .values(status="done", finished_at=bindparam("b_now", type_=DateTime())))
        self._ins_ranking = insert(RK).returning(RK.c.id)
        self._ins_entries = insert(RankingEntry.__table__)

    def submit_ranking(self, username: str | None, item_id: Any, ranks: Any, flags: Any = None,
                       rationale: str = "", time_spent_s: float | None = None) -> dict:
        """Store one annotator's ranking of an item assigned to them.

        `ranks` maps response id -> rank (1 = best, ties share a rank; gaps are closed: 1,3,3 -> 1,2,2);
        `flags` maps response id -> list of FLAGS. A repeated submit of an item already submitted
        returns {"ok": True, "duplicate": True} and changes nothing. Raises SubmissionError/AccessError
        (nothing stored) for anything else that is wrong.
        """
        pid = as_item_id(item_id)
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
        with self.db.rconn() as c:
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
            rank_by_id, flags_by_id = validate_ranking(resp_ids, ranks, flags)
        now = utcnow()
        if time_spent is None:  # measured on the server: from when the item was first leased
            time_spent = max(0.0, (now - row.leased_at).total_seconds())
        dense = dense_ranks([rank_by_id[i] for i in resp_ids])
        # Phase 2 (one short write transaction): the assignment marked done (only if still the user's
        # and the user still active), the ranking and its entries; all or nothing.
        try:
            with self.db.wconn() as c:
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
                progress = self.assigner.progress_c(c, uid)  # inside: counts this ranking exactly
        except IntegrityError:
            # The unique (prompt, annotator) constraint: a concurrent identical submit won the race.
            with self.db.rconn() as c:
                existing = c.scalar(select(Ranking.id).where(Ranking.prompt_id == pid, Ranking.user_id == uid))
                if existing is None:
                    raise
                return self._duplicate(c, uid, pid, existing)
        return {"ok": True, "duplicate": False, "ranking_id": rid,
                "message": f"saved ranking of item {pid}", "progress": progress}

    def _duplicate(self, c, uid: int, pid: int, ranking_id: int) -> dict:
        return {"ok": True, "duplicate": True, "ranking_id": ranking_id,
                "message": f"item {pid} was already submitted; kept the first submission",
                "progress": self.assigner.progress_c(c, uid)}


def validate_ranking(resp_ids: list[int], ranks: Any, flags: Any) -> tuple[dict[int, int], dict[int, list[str]]]:
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

