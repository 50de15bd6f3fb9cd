"""The app's event handlers as plain methods, testable without a browser or a server.

Every method takes the logged-in user's name first: the builder (annotation_ui.app) passes Gradio's
`request.username` and nothing else, so no handler takes an identity from its inputs. Every method
checks the role it needs before anything else (AccessError "needs the role ..."), and the store
re-checks that an item is assigned to the caller. Methods return plain data (dicts, lists, text);
the builder turns it into Gradio updates. Status texts are in the caller's UI language and
Markdown-escaped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from . import agreement as ag
from .i18n import t
from .render import md_escape
from .store import MAX_RESPONSES, ROLES, AccessError, Store, StoreError

ANYONE = ROLES
REVIEWERS = ("reviewer", "admin")
ADMINS = ("admin",)
EXPORT_FORMATS = ("rankings", "pairs", "sft", "prompts")


class Handlers:
    def __init__(self, store: Store, *, max_responses: int = MAX_RESPONSES, default_lang: str = "en"):
        self.store = store
        self.max_responses = max_responses
        self.default_lang = default_lang

    def user(self, username: str | None, *roles: str) -> dict:
        """The caller's {"name", "role", "ui_lang"} if active and of one of `roles` (default: any)."""
        return self.store.require_role(username, *(roles or ANYONE))

    def _status(self, lang: str, key: str, **kw) -> str:
        return md_escape(t(lang, key, **kw))

    # ---- annotator: session ------------------------------------------------------------------------
    def load(self, username: str | None) -> dict:
        """Opening the app: {"user", "lang", "item" (to rank), "write_item"}."""
        u = self.user(username)
        return {"user": u, "lang": u["ui_lang"] or self.default_lang, "item": self.store.next_item(u["name"]),
                "write_item": self.store.next_write_item(u["name"])}

    def set_lang(self, username: str | None, lang: str, state: dict | None) -> dict:
        """Switch the UI language; the open item is re-rendered without touching its assignment."""
        u = self.user(username)
        lang = lang if lang in ("en", "zh") else "en"
        self.store.set_ui_lang(u["name"], lang)
        item = (state or {}).get("item")
        if item is not None and (state or {}).get("item_id") is not None:
            item = {**item, "progress": self.store.progress(u["name"])}
        else:
            item = self.store.next_item(u["name"])
        return {"user": u, "lang": lang, "item": item}

    # ---- annotator: ranking ------------------------------------------------------------------------
    def submit_ranking(self, username: str | None, lang: str, state: dict | None, ranks_in: list, flags_in: list,
                       rationale: str | None) -> dict:
        """Ranks and flags by screen position (A, B, ...) of the item in `state`. Returns {"ok",
        "item" (the next item; None = keep the current view), "status", "error"}."""
        u = self.user(username)
        if not state or state.get("item_id") is None:
            return {"ok": False, "item": self.store.next_item(u["name"]), "status": self._status(lang, "no_items"), "error": None}
        ids = state.get("response_ids") or []
        ranks = {str(rid): ranks_in[k] for k, rid in enumerate(ids) if k < len(ranks_in) and ranks_in[k] not in (None, "")}
        flags = {str(rid): list(flags_in[k] or []) for k, rid in enumerate(ids) if k < len(flags_in) and flags_in[k]}
        try:
            res = self.store.submit_ranking(u["name"], state["item_id"], ranks, flags, rationale or "", None)
        except StoreError as e:
            return {"ok": False, "item": None, "status": self._status(lang, "error", msg=str(e)), "error": str(e)}
        msg = self._status(lang, "duplicate" if res["duplicate"] else "saved", item=state["item_id"])
        return {"ok": True, "item": self.store.next_item(u["name"]), "status": msg, "error": None, "result": res}

    def skip_ranking(self, username: str | None, lang: str, state: dict | None) -> dict:
        u = self.user(username)
        msg = ""
        if state and state.get("item_id") is not None:
            try:
                self.store.skip(u["name"], state["item_id"])
                msg = self._status(lang, "skipped", item=state["item_id"])
            except StoreError as e:
                msg = self._status(lang, "error", msg=str(e))
        return {"item": self.store.next_item(u["name"]), "status": msg}

    # ---- annotator: writing ------------------------------------------------------------------------
    def next_write(self, username: str | None) -> dict:
        u = self.user(username)
        return self.store.next_write_item(u["name"])

    def check_demonstration(self, username: str | None, state: dict | None, prompt: str | None,
                            response: str | None) -> list[dict]:
        """The judges' advice on a draft, for the caller's open write item (read from the store,
        not from `state`); nothing is stored."""
        from .advice import demonstration_warnings
        from .store.write import prompt_text

        u = self.user(username)
        item = self.store.next_write_item(u["name"])
        if item.get("item_id") is None or (state or {}).get("item_id") != item["item_id"]:
            raise AccessError(f"item {(state or {}).get('item_id')!r} is not assigned to you")
        return demonstration_warnings(response or "", lang=item["lang"], prompt_text=prompt_text(item["prompt"], item["messages"]),
                                      category=item["category"], written_prompt=(prompt or "") if item["write_prompt"] else None)

    def submit_demonstration(self, username: str | None, lang: str, state: dict | None, prompt: str | None,
                             response: str | None) -> dict:
        """Store the caller's demonstration for the write item in `state`. Returns {"ok", "item"
        (next write item; None = keep the view), "status", "warnings", "error"}."""
        u = self.user(username)
        if not state or state.get("item_id") is None:
            return {"ok": False, "item": self.store.next_write_item(u["name"]), "warnings": [],
                    "status": self._status(lang, "no_write_items"), "error": None}
        try:
            res = self.store.submit_demonstration(u["name"], state["item_id"], response or "",
                                                  (prompt or "") if state.get("write_prompt") else None, None)
        except StoreError as e:
            return {"ok": False, "item": None, "warnings": [], "status": self._status(lang, "error", msg=str(e)), "error": str(e)}
        msg = self._status(lang, "duplicate" if res["duplicate"] else "saved_demo", item=state["item_id"])
        return {"ok": True, "item": self.store.next_write_item(u["name"]), "warnings": res["warnings"], "status": msg,
                "error": None, "result": res}

    def skip_write(self, username: str | None, lang: str, state: dict | None) -> dict:
        u = self.user(username)
        msg = ""
        if state and state.get("item_id") is not None:
            try:
                self.store.skip_write(u["name"], state["item_id"])
                msg = self._status(lang, "skipped", item=state["item_id"])
            except StoreError as e:
                msg = self._status(lang, "error", msg=str(e))
        return {"item": self.store.next_write_item(u["name"]), "status": msg}

    # ---- reviewer: rankings ------------------------------------------------------------------------
    def review_list(self, username: str | None, limit: int = 50) -> list[list]:
        """Items with >= 2 rankings, most disagreement first: [item_id, ext_id, annotators, W, adjudicated]."""
        self.user(username, *REVIEWERS)
        rows = []
        for item in self.store.items_with_rankings(min_rankings=2):
            ids = [r["id"] for r in item["responses"]]
            rankings = [[r["ranks"][i] for i in ids] for r in item["rankings"]]
            w = ag.kendalls_w(rankings)
            rows.append([item["item_id"], item["ext_id"], len(rankings), None if w is None else round(w, 3),
                         item["review"] is not None, ag.disagreement(rankings)])
        rows.sort(key=lambda r: (-r[5], r[0]))
        return [r[:5] for r in rows[:limit]]

    def review_open(self, username: str | None, item_id: Any) -> dict:
        """Everything about one ranked item; StoreError for an unknown item or one too big to show."""
        self.user(username, *REVIEWERS)
        item = self.store.item_detail(item_id)
        if len(item["responses"]) > self.max_responses:
            raise StoreError(f"item {item['item_id']} has {len(item['responses'])} responses; this view shows at most {self.max_responses}")
        return item

    def review_save(self, username: str | None, item_id: Any, note: str | None, ranks_in: list) -> str:
        """The reviewer's final ranking by screen position; the message to show."""
        u = self.user(username, *REVIEWERS)
        if item_id is None:
            return "Open an item first."
        try:
            item = self.store.item_detail(item_id)
            ids = [r["id"] for r in item["responses"]]
            given = {str(rid): ranks_in[k] for k, rid in enumerate(ids) if k < len(ranks_in) and ranks_in[k] not in (None, "")}
            return md_escape(self.store.adjudicate(u["name"], item_id, given, note or "")["message"])
        except StoreError as e:
            return md_escape(f"Not saved: {e}")

    # ---- reviewer: demonstrations ------------------------------------------------------------------
    def demo_list(self, username: str | None, status: str | None = "pending", limit: int = 200) -> list[list]:
        """[id, ext_id, annotator, lang, category, status, warnings] of demonstrations with `status` (None/"all": every one)."""
        self.user(username, *REVIEWERS)
        demos = self.store.demonstrations(None if status in (None, "", "all") else status)
        return [[d["id"], d["ext_id"], d["annotator"], d["lang"], d["category"], d["status"], len(d["warnings"])]
                for d in demos[:limit]]

    def demo_open(self, username: str | None, demo_id: Any) -> dict:
        self.user(username, *REVIEWERS)
        return self.store.demonstration_detail(demo_id)

    def demo_review(self, username: str | None, demo_id: Any, decision: str, prompt: str | None = None,
                    response: str | None = None, note: str | None = "") -> str:
        """accept / edit / reject; the message to show (errors included, Markdown-escaped)."""
        u = self.user(username, *REVIEWERS)
        if demo_id is None:
            return "Open a demonstration first."
        try:
            return md_escape(self.store.review_demonstration(u["name"], demo_id, decision, prompt, response, note or "")["message"])
        except StoreError as e:
            return md_escape(f"Not saved: {e}")

    # ---- admin -------------------------------------------------------------------------------------
    def admin_progress(self, username: str | None) -> list[list]:
        """Per user: name, role, active, done, assigned, skipped, mean seconds, tau-b to the others' consensus."""
        self.user(username, *ADMINS)
        from .io import build_export

        _, report = build_export(self.store)
        taus = {k: v["mean_tau_b_to_consensus"] for k, v in report["annotators"].items()}
        return [[p["name"], p["role"], p["active"], p["done"], p["assigned"], p["skipped"], p["mean_time_s"],
                 None if taus.get(p["name"]) is None else round(taus[p["name"]], 3)] for p in self.store.annotator_progress()]

    def admin_demo_counts(self, username: str | None) -> list[list]:
        """Per (annotator, language): written, pending, accepted, edited, rejected, warned."""
        self.user(username, *ADMINS)
        return [[r["annotator"], r["lang"], r["written"], r["pending"], r["accepted"], r["edited"], r["rejected"], r["warned"]]
                for r in self.store.demonstration_counts()]

    def admin_user(self, username: str | None, action: str, name: str, role: str, password: str | None) -> str:
        """add / disable / enable a user; the message to show."""
        self.user(username, *ADMINS)
        try:
            if action == "add":
                if not password or len(password) < 8:
                    raise StoreError("password must have at least 8 characters")
                self.store.add_user(name, role, password)
                msg = f"added {role} {name}"
            elif action in ("disable", "enable"):
                self.store.set_active(name, action == "enable")
                msg = f"{action}d {name}"
            else:
                raise StoreError(f"unknown action {action!r}")
        except StoreError as e:
            msg = f"error: {e}"
        return md_escape(msg)

    def admin_export(self, username: str | None, fmt: str) -> tuple[list[str], str]:
        """Export in `fmt` to a fresh temporary folder: ([files], message)."""
        self.user(username, *ADMINS)
        from .io import export

        fmt = fmt if fmt in EXPORT_FORMATS else "rankings"
        out = Path(tempfile.mkdtemp(prefix="annotation-export-")) / f"{fmt}.jsonl"
        report = export(self.store, out, fmt=fmt)
        return [str(out), report["report"]], md_escape(f"{report['rows']} rows from {report['items_exported']} items")
