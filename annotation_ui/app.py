"""The Gradio annotation app: a thin builder wiring `annotation_ui.handlers` to components.

Security model (every Gradio event handler is an HTTP endpoint anyone logged in can call):
- identity comes only from `request.username` (Gradio auth against the users table): every wrapper
  here passes that and nothing else to a handler, and no handler takes a user name from its inputs;
- every handler checks the role it needs (annotation_ui.handlers) and the store checks that an
  item is assigned to the caller;
- untrusted text is shown escaped (annotation_ui.render): HTML/JS in it is displayed, never run;
- the public API is exactly four named endpoints, `next_item`, `submit_ranking`, `next_write_item`
  and `submit_demonstration`; every other handler is private (not offered to API clients) and
  role-checked anyway.

`python -m annotation_ui serve` (annotation_ui.serve) builds and launches it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import html
import typing
from pathlib import Path
from typing import Any

import gradio as gr

from .handlers import Handlers
from .i18n import LETTERS, t
from .render import (  # noqa: F401  (render_* re-exported for callers of the old module)
    md_escape, render_demonstration, render_prompt, render_review, render_text, render_warnings, render_write_item,
)
from .serve import ServeConfig, launch, make_auth, serve_main  # noqa: F401  (re-exported)
from .store import FLAGS, MAX_RESPONSES, ROLES, Store, StoreError, WouldBlock

N = MAX_RESPONSES
DEMO_STATUSES = ["pending", "accepted", "edited", "rejected", "all"]


def _load_guidelines(cfg: ServeConfig, lang: str) -> str:
    p = Path(cfg.guidelines_dir) / f"guidelines.{lang}.md"
    if p.exists():
        return p.read_text(encoding="utf-8")
    return "Rank the responses from best (1) to worst; give equal ranks to responses of equal quality."


def login_name(request: gr.Request | None) -> str | None:
    """The logged-in user's name: Gradio's `request.username`, the only source of identity."""
    return getattr(request, "username", None) if request is not None else None


def resolved_hints(fn):
    """Gradio reads an endpoint's type hints on every call; with this module's postponed
    annotations each read re-parses every hint from its string. Resolve them once."""
    fn.__annotations__ = typing.get_type_hints(fn)
    return fn


def gradio_errors(fn):
    """Store errors raised by a handler become Gradio errors (shown to the caller)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreError as e:
            raise gr.Error(str(e)) from None
    return wrapper


def rank_view(item: dict | None, lang: str, status: str = "", keep_values: bool = False) -> list:
    """Updates for: state, progress, prompt, N x (column, response html, rank, flags), rationale, status."""
    out: list[Any] = []
    if item is None or item.get("item_id") is None:
        prog = (item or {}).get("progress") or {"done": 0, "assigned": 0, "skipped": 0}
        out += [None, t(lang, "progress", **prog), f"<p>{html.escape(t(lang, 'no_items'))}</p>"]
        for _ in range(N):
            out += [gr.update(visible=False), "", gr.update(value=None), gr.update(value=[])]
        return out + [gr.update(value=""), status]
    n = len(item["responses"])
    if n > N:  # import refuses such items (store.items.MAX_RESPONSES); an old database may hold one
        raise StoreError(f"item {item['item_id']} has {n} responses; this app shows at most {N}")
    state = {"item_id": item["item_id"], "response_ids": [r["id"] for r in item["responses"]], "item": item}
    out += [state, t(lang, "progress", **item["progress"]), render_prompt(item, lang)]
    choices = [str(i) for i in range(1, n + 1)]
    flag_choices = [(t(lang, "flag_" + f), f) for f in FLAGS]
    for k in range(N):
        if k < n:
            r = item["responses"][k]
            out += [gr.update(visible=True),
                    f'<div class="ann-label">{html.escape(t(lang, "response", letter=LETTERS[k]))}</div>'
                    f'<div class="ann-response">{render_text(r["text"])}</div>',
                    gr.update(choices=choices, label=t(lang, "rank", letter=LETTERS[k]), **({} if keep_values else {"value": None})),
                    gr.update(choices=flag_choices, label=t(lang, "flags"), **({} if keep_values else {"value": []}))]
        else:
            out += [gr.update(visible=False), "", gr.update(value=None), gr.update(value=[])]
    return out + [gr.update(label=t(lang, "rationale"), **({} if keep_values else {"value": ""})), status]


def write_view(item: dict | None, lang: str, status: str = "", advice: str = "") -> list:
    """Updates for: write state, progress, item html, prompt box, response box, advice, status."""
    if item is None or item.get("item_id") is None:
        prog = (item or {}).get("progress") or {"done": 0, "assigned": 0, "skipped": 0}
        return [None, t(lang, "progress", **prog), f"<p>{html.escape(t(lang, 'no_write_items'))}</p>",
                gr.update(visible=False, value=""), gr.update(visible=False, value=""), advice, status]
    state = {"item_id": item["item_id"], "write_prompt": bool(item["write_prompt"])}
    label = "your_next_turn" if item.get("messages") else "your_response"
    return [state, t(lang, "progress", **item["progress"]), render_write_item(item, lang),
            gr.update(visible=bool(item["write_prompt"]), value="", label=t(lang, "your_prompt")),
            gr.update(visible=True, value="", label=t(lang, label)), advice, status]


def build_app(store: Store, cfg: ServeConfig) -> gr.Blocks:
    h = Handlers(store, max_responses=N, default_lang=cfg.default_lang)
    guidelines = {lang: _load_guidelines(cfg, lang) for lang in ("en", "zh")}
    L0 = cfg.default_lang

    # ---- the public API endpoints ------------------------------------------------------------------
    # Async handlers. On SQLite a store call is a few hundred microseconds of local work, less than
    # handing it to a thread costs (a hop, then a GIL hand-over after every statement): the event
    # loop runs it itself, under store.nowait(), so that a write which would wait (for a UI handler's
    # transaction, or another process such as an import) raises WouldBlock before writing anything
    # and is redone on a database thread that may wait. PostgreSQL calls (network round trips) always
    # go to the database threads. Measured by bench/annotation_load.py: Gradio's default (sync
    # handlers on 48 worker threads queueing on the write lock) gave p95 ~260 ms in the closed loop.
    db_pool = concurrent.futures.ThreadPoolExecutor(cfg.db_threads or (1 if store.is_sqlite else 8),
                                                    thread_name_prefix="annotation-db")

    async def as_user(request: gr.Request | None, fn, *args):
        """fn(logged-in user name, *args), on the loop when it cannot block, else on the database
        threads; store errors become Gradio errors (shown to the caller)."""
        try:
            name = login_name(request)
            if not name:
                raise StoreError("not logged in")
            if store.is_sqlite:
                try:
                    with store.nowait():
                        return fn(name, *args)
                except WouldBlock:
                    pass
            return await asyncio.get_running_loop().run_in_executor(db_pool, functools.partial(fn, name, *args))
        except StoreError as e:
            raise gr.Error(str(e)) from None

    @resolved_hints
    async def next_item(request: gr.Request) -> dict:
        """The logged-in user's current or next assignment: {"item_id", "ext_id", "lang", "category",
        "prompt", "messages", "responses": [{"id", "text"}], "lease_expires_at", "progress"};
        item_id is None when nothing is left."""
        return await as_user(request, store.next_item)

    @resolved_hints
    async def submit_ranking(item_id: int, ranks: dict, flags: dict | None = None, rationale: str = "",
                             time_spent_s: float | None = None, request: gr.Request = None) -> dict:
        """Submit the logged-in user's ranking of an assigned item. ranks: {"<response id>": rank}
        (1 = best, ties share a rank); flags: {"<response id>": [flag, ...]} with flags from
        harmful, needless_refusal, language_mixing, factual_error, unhelpful. A repeated submit
        returns duplicate=true and stores nothing new. Errors say what is wrong; nothing is stored."""
        return await as_user(request, store.submit_ranking, item_id, ranks, flags or {}, rationale or "", time_spent_s)

    @resolved_hints
    async def next_write_item(request: gr.Request) -> dict:
        """The logged-in user's current or next item to write for: {"item_id", "ext_id", "lang",
        "category", "prompt", "messages", "write_prompt", "lease_expires_at", "progress"};
        write_prompt=true: write the prompt too (in lang, of category). item_id None: none left."""
        return await as_user(request, store.next_write_item)

    @resolved_hints
    async def submit_demonstration(item_id: int, response: str, prompt: str | None = None,
                                   time_spent_s: float | None = None, request: gr.Request = None) -> dict:
        """Submit the logged-in user's ideal response (and prompt, when write_prompt) for an
        assigned write item: {"ok", "duplicate", "demonstration_id", "warnings", "message",
        "progress"}. Warnings are advice (language, mixing, refusal), never a refusal to store.
        A repeated submit returns duplicate=true and stores nothing new."""
        return await as_user(request, store.submit_demonstration, item_id, response, prompt, time_spent_s)

    with gr.Blocks(title="glm-align annotation") as demo:
        lang_state = gr.State(L0)
        item_state = gr.State(None)
        write_state = gr.State(None)
        with gr.Row(equal_height=True):
            title = gr.Markdown(f"## {t(L0, 'title')}")
            who = gr.Markdown("")
            lang_radio = gr.Radio([("English", "en"), ("中文", "zh")], value=L0, label=t(L0, "language"), elem_id="ann-lang")
        with gr.Tabs():
            with gr.Tab(t(L0, "tab_annotate"), id="annotate") as tab_annotate:
                progress = gr.Markdown("", elem_id="ann-progress")
                with gr.Accordion(t(L0, "guidelines"), open=False) as guide_acc:
                    guide_md = gr.Markdown(guidelines[L0])
                shortcuts = gr.Markdown(t(L0, "shortcuts"))
                prompt_html = gr.HTML("", elem_id="ann-prompt")
                cols, resp_html, rank_radios, flag_groups = [], [], [], []
                with gr.Row(equal_height=False):
                    for k in range(N):
                        with gr.Column(visible=False, min_width=220, elem_classes=["ann-col"], elem_id=f"ann-col-{k}") as col:
                            cols.append(col)
                            resp_html.append(gr.HTML("", elem_id=f"ann-response-{k}"))
                            rank_radios.append(gr.Radio([], label=t(L0, "rank", letter=LETTERS[k]), elem_id=f"ann-rank-{k}"))
                            flag_groups.append(gr.CheckboxGroup([], label=t(L0, "flags"), elem_id=f"ann-flags-{k}"))
                rationale = gr.Textbox(label=t(L0, "rationale"), lines=2, max_lines=8, elem_id="ann-rationale")
                with gr.Row():
                    skip_btn = gr.Button(t(L0, "skip"), variant="secondary", elem_id="ann-skip")
                    submit_btn = gr.Button(t(L0, "submit"), variant="primary", elem_id="ann-submit")
                status = gr.Markdown("", elem_id="ann-status")
            with gr.Tab(t(L0, "tab_write"), id="write") as tab_write:
                wr_progress = gr.Markdown("", elem_id="wr-progress")
                wr_item = gr.HTML("", elem_id="wr-item")
                wr_prompt = gr.Textbox(label=t(L0, "your_prompt"), lines=3, max_lines=12, visible=False, elem_id="wr-prompt")
                wr_response = gr.Textbox(label=t(L0, "your_response"), lines=8, max_lines=30, visible=False, elem_id="wr-response")
                wr_advice = gr.HTML("", elem_id="wr-advice")
                with gr.Row():
                    wr_skip = gr.Button(t(L0, "skip"), variant="secondary", elem_id="wr-skip")
                    wr_check = gr.Button(t(L0, "check"), elem_id="wr-check")
                    wr_submit = gr.Button(t(L0, "submit"), variant="primary", elem_id="wr-submit")
                wr_status = gr.Markdown("", elem_id="wr-status")
            with gr.Tab(t(L0, "tab_review"), id="review", visible=False) as tab_review:
                rv_title = gr.Markdown(f"### {t(L0, 'disagreed')}")
                rv_refresh = gr.Button(t(L0, "refresh"), elem_id="rv-refresh")
                rv_table = gr.Dataframe(headers=["item_id", "id", "annotators", "kendalls_w", "adjudicated"],
                                        interactive=False, elem_id="rv-table")
                with gr.Row():
                    rv_item = gr.Number(None, label=t(L0, "item_id"), precision=0, elem_id="rv-item")
                    rv_open = gr.Button(t(L0, "open"), elem_id="rv-open")
                rv_state = gr.State(None)
                rv_detail = gr.HTML("", elem_id="rv-detail")
                rv_ranks = [gr.Radio([], visible=False, label=t(L0, "adjudicate", letter=LETTERS[k]), elem_id=f"rv-rank-{k}")
                            for k in range(N)]
                rv_note = gr.Textbox(label=t(L0, "note"), lines=2)
                rv_save = gr.Button(t(L0, "save_adjudication"), variant="primary", elem_id="rv-save")
                rv_status = gr.Markdown("")
                dm_title = gr.Markdown(f"### {t(L0, 'demos')}")
                with gr.Row():
                    dm_filter = gr.Radio(DEMO_STATUSES, value="pending", label=t(L0, "demo_status"), elem_id="dm-filter")
                    dm_refresh = gr.Button(t(L0, "refresh"), elem_id="dm-refresh")
                dm_table = gr.Dataframe(headers=["id", "item", "annotator", "lang", "category", "status", "warnings"],
                                        interactive=False, elem_id="dm-table")
                with gr.Row():
                    dm_id = gr.Number(None, label=t(L0, "demo_id"), precision=0, elem_id="dm-id")
                    dm_open = gr.Button(t(L0, "open"), elem_id="dm-open")
                dm_state = gr.State(None)
                dm_detail = gr.HTML("", elem_id="dm-detail")
                dm_prompt = gr.Textbox(label=t(L0, "edit_prompt"), lines=3, visible=False, elem_id="dm-prompt")
                dm_response = gr.Textbox(label=t(L0, "edit_response"), lines=8, visible=False, elem_id="dm-response")
                dm_note = gr.Textbox(label=t(L0, "demo_note"), lines=2, elem_id="dm-note")
                with gr.Row():
                    dm_accept = gr.Button(t(L0, "accept"), variant="primary", elem_id="dm-accept")
                    dm_edit = gr.Button(t(L0, "save_edit"), elem_id="dm-edit")
                    dm_reject = gr.Button(t(L0, "reject"), variant="stop", elem_id="dm-reject")
                dm_status = gr.Markdown("", elem_id="dm-status")
            with gr.Tab(t(L0, "tab_admin"), id="admin", visible=False) as tab_admin:
                ad_title = gr.Markdown(f"### {t(L0, 'users')}")
                ad_refresh = gr.Button(t(L0, "refresh"), elem_id="ad-refresh")
                ad_table = gr.Dataframe(headers=["name", "role", "active", "done", "assigned", "skipped", "mean_time_s",
                                                 "tau_b_to_consensus"], interactive=False, elem_id="ad-table")
                ad_counts_title = gr.Markdown(f"### {t(L0, 'demo_counts')}")
                ad_counts = gr.Dataframe(headers=["annotator", "lang", "written", "pending", "accepted", "edited", "rejected",
                                                  "warned"], interactive=False, elem_id="ad-counts")
                with gr.Row():
                    ad_name = gr.Textbox(label=t(L0, "name"))
                    ad_role = gr.Dropdown(list(ROLES), value="annotator", label=t(L0, "role"))
                    ad_pw = gr.Textbox(label=t(L0, "password"), type="password")
                with gr.Row():
                    ad_add = gr.Button(t(L0, "add_user"))
                    ad_disable = gr.Button(t(L0, "disable"))
                    ad_enable = gr.Button(t(L0, "enable"))
                with gr.Row():
                    ad_format = gr.Radio(["rankings", "pairs", "sft", "prompts"], value="rankings", label=t(L0, "format"))
                    ad_export = gr.Button(t(L0, "export"))
                ad_file = gr.File(label="export", interactive=False)
                ad_status = gr.Markdown("")

        rank_outputs = [item_state, progress, prompt_html]
        for k in range(N):
            rank_outputs += [cols[k], resp_html[k], rank_radios[k], flag_groups[k]]
        rank_outputs += [rationale, status]
        write_outputs = [write_state, wr_progress, wr_item, wr_prompt, wr_response, wr_advice, wr_status]
        private = dict(api_visibility="private", concurrency_limit=cfg.concurrency_limit)

        relabel_targets = [title, tab_annotate, tab_write, tab_review, tab_admin, guide_acc, guide_md, shortcuts, skip_btn,
                           submit_btn, wr_skip, wr_check, wr_submit, rv_title, rv_refresh, rv_item, rv_open, rv_note,
                           rv_save, dm_title, dm_filter, dm_refresh, dm_id, dm_open, dm_prompt, dm_response, dm_note,
                           dm_accept, dm_edit, dm_reject, ad_title, ad_counts_title, ad_refresh, ad_name, ad_role, ad_pw,
                           ad_add, ad_disable, ad_enable, ad_format, ad_export, lang_radio]

        def relabel(lang: str) -> list:
            label = lambda key: gr.update(label=t(lang, key))  # noqa: E731
            value = lambda key: gr.update(value=t(lang, key))  # noqa: E731
            return [f"## {t(lang, 'title')}", label("tab_annotate"), label("tab_write"), label("tab_review"),
                    label("tab_admin"), label("guidelines"), guidelines[lang], t(lang, "shortcuts"), value("skip"),
                    value("submit"), value("skip"), value("check"), value("submit"), f"### {t(lang, 'disagreed')}",
                    value("refresh"), label("item_id"), value("open"), label("note"), value("save_adjudication"),
                    f"### {t(lang, 'demos')}", label("demo_status"), value("refresh"), label("demo_id"), value("open"),
                    label("edit_prompt"), label("edit_response"), label("demo_note"), value("accept"), value("save_edit"),
                    value("reject"), f"### {t(lang, 'users')}", f"### {t(lang, 'demo_counts')}", value("refresh"),
                    label("name"), label("role"), label("password"), value("add_user"), value("disable"),
                    value("enable"), label("format"), value("export"), label("language")]

        def who_text(u: dict, lang: str) -> str:
            return t(lang, "signed_in", name=md_escape(u["name"]), role=md_escape(u["role"]))

        # ---- annotator ------------------------------------------------------------------------
        @gradio_errors
        def on_load(request: gr.Request):
            r = h.load(login_name(request))
            u, lang = r["user"], r["lang"]
            return [lang, gr.update(value=lang), who_text(u, lang), gr.update(visible=u["role"] in ("reviewer", "admin")),
                    gr.update(visible=u["role"] == "admin"), *relabel(lang), *rank_view(r["item"], lang),
                    *write_view(r["write_item"], lang)]

        demo.load(on_load, None, [lang_state, lang_radio, who, tab_review, tab_admin, *relabel_targets, *rank_outputs,
                                  *write_outputs], **private)

        @gradio_errors
        def on_lang(lang: str, state: dict | None, request: gr.Request):
            r = h.set_lang(login_name(request), lang, state)
            keep = r["item"] is not None and (state or {}).get("item_id") == r["item"].get("item_id")
            # the write view: item and progress re-rendered, the draft in the text boxes kept
            wv = write_view(h.next_write(r["user"]["name"]), r["lang"])
            return [r["lang"], who_text(r["user"], r["lang"]), *relabel(r["lang"])[:-1],
                    *rank_view(r["item"], r["lang"], keep_values=keep), wv[1], wv[2]]

        lang_radio.input(on_lang, [lang_radio, item_state], [lang_state, who, *relabel_targets[:-1], *rank_outputs,
                                                              wr_progress, wr_item], **private)

        @gradio_errors
        def on_submit(request: gr.Request, lang: str, state: dict | None, *values):
            r = h.submit_ranking(login_name(request), lang, state, list(values[:N]), list(values[N:2 * N]), values[2 * N])
            if r["item"] is None:  # refused: keep what the annotator entered, say why
                gr.Warning(r["error"])
                return [gr.skip()] * (len(rank_outputs) - 1) + [r["status"]]
            return rank_view(r["item"], lang, r["status"])

        submit_btn.click(on_submit, [lang_state, item_state, *rank_radios, *flag_groups, rationale], rank_outputs, **private)

        @gradio_errors
        def on_skip(lang: str, state: dict | None, request: gr.Request):
            r = h.skip_ranking(login_name(request), lang, state)
            return rank_view(r["item"], lang, r["status"])

        skip_btn.click(on_skip, [lang_state, item_state], rank_outputs, **private)

        # ---- writer ---------------------------------------------------------------------------
        @gradio_errors
        def on_write_check(lang: str, state: dict | None, prompt: str, response: str, request: gr.Request):
            return render_warnings(h.check_demonstration(login_name(request), state, prompt, response), lang)

        wr_check.click(on_write_check, [lang_state, write_state, wr_prompt, wr_response], wr_advice, **private)

        @gradio_errors
        def on_write_submit(lang: str, state: dict | None, prompt: str, response: str, request: gr.Request):
            r = h.submit_demonstration(login_name(request), lang, state, prompt, response)
            if r["item"] is None:
                gr.Warning(r["error"])
                return [gr.skip()] * (len(write_outputs) - 1) + [r["status"]]
            advice = render_warnings(r["warnings"], lang) if r["ok"] else ""
            return write_view(r["item"], lang, r["status"], advice)

        wr_submit.click(on_write_submit, [lang_state, write_state, wr_prompt, wr_response], write_outputs, **private)

        @gradio_errors
        def on_write_skip(lang: str, state: dict | None, request: gr.Request):
            r = h.skip_write(login_name(request), lang, state)
            return write_view(r["item"], lang, r["status"])

        wr_skip.click(on_write_skip, [lang_state, write_state], write_outputs, **private)

        # ---- reviewer: rankings ---------------------------------------------------------------
        @gradio_errors
        def on_review_refresh(request: gr.Request):
            return h.review_list(login_name(request))

        rv_refresh.click(on_review_refresh, None, rv_table, **private)

        @gradio_errors
        def on_review_pick(evt: gr.SelectData, request: gr.Request):
            """Clicking a row of the disagreement list puts its item id in the box."""
            h.user(login_name(request), "reviewer", "admin")
            row = getattr(evt, "row_value", None)
            return row[0] if row else gr.skip()

        rv_table.select(on_review_pick, None, rv_item, **private)

        @gradio_errors
        def on_review_open(item_id, lang: str, request: gr.Request):
            name = login_name(request)
            h.user(name, "reviewer", "admin")
            try:
                item = h.review_open(name, item_id)
            except StoreError as e:
                return [None, f"<p>{html.escape(str(e))}</p>"] + [gr.update(visible=False)] * N
            n = len(item["responses"])
            return [item["item_id"], render_review(item, lang)] + [
                gr.update(visible=k < n, choices=[str(i) for i in range(1, n + 1)],
                          value=None if item["review"] is None or k >= n
                          else str(item["review"]["ranks"][item["responses"][k]["id"]]),
                          label=t(lang, "adjudicate", letter=LETTERS[k]))
                for k in range(N)]

        rv_open.click(on_review_open, [rv_item, lang_state], [rv_state, rv_detail, *rv_ranks], **private)

        @gradio_errors
        def on_review_save(request: gr.Request, item_id, note: str, *ranks):
            return h.review_save(login_name(request), item_id, note, list(ranks))

        rv_save.click(on_review_save, [rv_state, rv_note, *rv_ranks], rv_status, **private)

        # ---- reviewer: demonstrations ---------------------------------------------------------
        @gradio_errors
        def on_demo_refresh(status: str, request: gr.Request):
            return h.demo_list(login_name(request), status)

        dm_refresh.click(on_demo_refresh, [dm_filter], dm_table, **private)

        @gradio_errors
        def on_demo_pick(evt: gr.SelectData, request: gr.Request):
            h.user(login_name(request), "reviewer", "admin")
            row = getattr(evt, "row_value", None)
            return row[0] if row else gr.skip()

        dm_table.select(on_demo_pick, None, dm_id, **private)

        @gradio_errors
        def on_demo_open(demo_id, lang: str, request: gr.Request):
            name = login_name(request)
            h.user(name, "reviewer", "admin")
            try:
                d = h.demo_open(name, demo_id)
            except StoreError as e:
                return [None, f"<p>{html.escape(str(e))}</p>", gr.update(visible=False), gr.update(visible=False)]
            return [d["id"], render_demonstration(d, lang),
                    gr.update(visible=d["written_prompt"] is not None, value=d["final_prompt"] or ""),
                    gr.update(visible=True, value=d["final_response"])]

        dm_open.click(on_demo_open, [dm_id, lang_state], [dm_state, dm_detail, dm_prompt, dm_response], **private)

        def on_demo_review(decision: str):
            @gradio_errors
            def fn(demo_id, prompt: str, response: str, note: str, request: gr.Request):
                edit = decision == "edit"
                return h.demo_review(login_name(request), demo_id, decision, prompt if edit else None,
                                     response if edit else None, note)
            fn.__name__ = f"on_demo_{decision}"
            return fn

        for btn, decision in ((dm_accept, "accept"), (dm_edit, "edit"), (dm_reject, "reject")):
            btn.click(on_demo_review(decision), [dm_state, dm_prompt, dm_response, dm_note], dm_status, **private)

        # ---- admin ----------------------------------------------------------------------------
        @gradio_errors
        def on_admin_refresh(request: gr.Request):
            name = login_name(request)
            return h.admin_progress(name), h.admin_demo_counts(name)

        ad_refresh.click(on_admin_refresh, None, [ad_table, ad_counts], **private)

        def on_admin_user(action: str):
            @gradio_errors
            def fn(name: str, role: str, password: str, request: gr.Request):
                return h.admin_user(login_name(request), action, name, role, password), gr.update(value="")
            fn.__name__ = f"on_admin_{action}_user"
            return fn

        for btn, action in ((ad_add, "add"), (ad_disable, "disable"), (ad_enable, "enable")):
            btn.click(on_admin_user(action), [ad_name, ad_role, ad_pw], [ad_status, ad_pw], **private)

        @gradio_errors
        def on_admin_export(fmt: str, request: gr.Request):
            return h.admin_export(login_name(request), fmt)

        ad_export.click(on_admin_export, [ad_format], [ad_file, ad_status], **private)

        # ---- the public API -------------------------------------------------------------------
        gr.api(next_item, api_name="next_item", queue=False)
        gr.api(submit_ranking, api_name="submit_ranking", queue=False)
        gr.api(next_write_item, api_name="next_write_item", queue=False)
        gr.api(submit_demonstration, api_name="submit_demonstration", queue=False)
    return demo
