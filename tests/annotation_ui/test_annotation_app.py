"""The launched app through gradio_client and raw HTTP: round trip, access control, XSS, bad input."""
from __future__ import annotations

import json
import os
import socket

import httpx
import pytest

from annotation_helpers import make_items, rank_all
from annotation_ui import io as aio
from annotation_ui.app import ServeConfig, launch, render_prompt, render_review, render_text
from annotation_ui.store import Store

XSS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    '"><svg onload=window.__xss=3>',
    "[click](javascript:window.__xss=4)",
    "<iframe src=javascript:window.__xss=5></iframe>",
]


WRITE_ITEMS = [{"id": f"w{i}", "lang": "en", "category": "qa", "prompt": f"What is {i} + {i}? " + XSS[0]}
               for i in range(3)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    url = f"sqlite:///{d / 'app.db'}"
    store = Store(url, overlap=2)
    items = make_items(6)
    items.append({"id": "xss", "lang": "en", "category": "security", "prompt": XSS[0] + " what is 2+2?",
                  "responses": XSS[1:4] + ["4"]})
    store.import_rows([aio.validate_item(r, "t") for r in items])
    store.import_rows([aio.validate_item(r, "t", need_responses=None) for r in WRITE_ITEMS])
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("root", "admin")):
        store.add_user(name, role, f"pw-{name}-123")
    demo, base, _ = launch(ServeConfig(db=url, port=free_port(), overlap=2), block=False, store=store)
    yield {"url": base, "store": store, "demo": demo, "dir": d}
    demo.close()
    store.close()


def client(app, name):
    from gradio_client import Client

    return Client(app["url"], auth=(name, f"pw-{name}-123"), verbose=False)


class RawSession:
    """A logged-in browser-like session calling any handler by fn_index over the queue."""

    def __init__(self, app, name):
        self.h = httpx.Client(base_url=app["url"], timeout=30)
        r = self.h.post("/login", data={"username": name, "password": f"pw-{name}-123"})
        assert r.status_code == 200, r.text
        self.session = os.urandom(6).hex()

    def call(self, fn_index: int, data: list) -> dict:
        r = self.h.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": self.session,
                                                        "event_data": None, "trigger_id": None})
        assert r.status_code == 200, r.text
        with self.h.stream("GET", f"/gradio_api/queue/data?session_hash={self.session}") as s:
            for line in s.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        return msg
        raise AssertionError("no process_completed message")


def fn_index(app, name: str) -> int:
    for i, fn in app["demo"].fns.items():
        if getattr(fn.fn, "__name__", "") == name:
            return i
    raise KeyError(name)


def test_roundtrip_with_gradio_client(app, tmp_path):
    c = client(app, "alice")
    api = c.view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/next_item", "/next_write_item", "/submit_demonstration", "/submit_ranking"]
    assert api["unnamed_endpoints"] == {}
    item = c.predict(api_name="/next_item")
    assert item["item_id"] is not None and len(item["responses"]) == 4
    assert "model" not in item["responses"][0]  # blind: the model of origin is not shown to annotators
    ids = [r["id"] for r in item["responses"]]
    ranks = {str(ids[0]): 2, str(ids[1]): 1, str(ids[2]): 2, str(ids[3]): 3}
    res = c.predict(item["item_id"], ranks, {str(ids[3]): ["factual_error"]}, "B is clearest", 42.0, api_name="/submit_ranking")
    assert res["ok"] and not res["duplicate"] and res["progress"]["done"] == 1
    again = c.predict(item["item_id"], ranks, {}, "", None, api_name="/submit_ranking")
    assert again["duplicate"] and again["ranking_id"] == res["ranking_id"]
    assert c.predict(api_name="/next_item")["item_id"] != item["item_id"]
    out = tmp_path / "r.jsonl"
    aio.export(app["store"], out)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    row = rows[item["ext_id"]]
    by_text = {r["text"]: ranks[str(r["id"])] for r in item["responses"]}
    assert row["ranking"] == [by_text[t] for t in row["responses"]]


def test_submit_waits_on_a_database_thread_while_another_process_writes(app):
    """While another process holds SQLite's write lock, a submit is not refused and does not stall
    the server: the event loop hands it to the database thread, which waits for the lock; other
    requests are answered meanwhile; the ranking is stored once the lock is released."""
    import sqlite3
    import threading
    import time

    app["store"].add_user("carol", "annotator", "pw-carol-123")
    c = client(app, "carol")
    item = c.predict(api_name="/next_item")
    ranks = {str(r["id"]): k + 1 for k, r in enumerate(item["responses"])}
    other = sqlite3.connect(str(app["dir"] / "app.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    result = {}
    job = threading.Thread(target=lambda: result.update(c.predict(item["item_id"], ranks, {}, "", None,
                                                                  api_name="/submit_ranking")))
    job.start()
    time.sleep(1.0)
    assert job.is_alive()  # waiting for the lock, not refused
    # the loop is free: the login page is served while the submit still waits for the lock
    assert httpx.get(app["url"], timeout=10).status_code == 200
    assert job.is_alive() and result == {}
    other.execute("ROLLBACK")
    other.close()
    job.join(timeout=30)
    assert result.get("ok") and not result.get("duplicate")
    stored = app["store"].item_detail(item["item_id"])["rankings"]
    assert [r["ranks"] for r in stored if r["annotator"] == "carol"] == [{int(k): v for k, v in ranks.items()}]


def test_wrong_password_and_anonymous(app):
    from gradio_client import Client

    with pytest.raises(Exception):
        Client(app["url"], auth=("alice", "wrong-password"), verbose=False)
    r = httpx.post(app["url"] + "gradio_api/run/next_item", json={"data": []})
    assert r.status_code in (401, 403)


def test_annotator_cannot_touch_others_items(app):
    """Trudy tries eve's leased item (one trudy is provably not assigned): submitting it with
    its real response ids and opening it in the reviewer view are refused, nothing is stored, and
    eve can still submit it."""
    from sqlalchemy import text

    store = app["store"]
    for n in ("eve", "trudy"):
        store.add_user(n, "annotator", f"pw-{n}-123")
    m, e = client(app, "trudy"), client(app, "eve")
    m_item = m.predict(api_name="/next_item")
    e_item = e.predict(api_name="/next_item")
    while e_item["item_id"] == m_item["item_id"]:  # overlap 2 pairs them up first: eve moves on
        e.predict(e_item["item_id"], rank_all(e_item), {}, "", None, api_name="/submit_ranking")
        e_item = e.predict(api_name="/next_item")
    target = e_item["item_id"]
    with store.engine.connect() as c:
        mine = c.execute(text("SELECT count(*) FROM assignments a JOIN users u ON u.id = a.user_id "
                              "WHERE u.name = 'trudy' AND a.prompt_id = :p"), {"p": target}).scalar()
    assert target is not None and mine == 0  # eve's item, never trudy's
    before = store.counts()["rankings"]
    with pytest.raises(Exception, match="not assigned to you"):
        m.predict(target, rank_all(e_item), {}, "trudy was here", None, api_name="/submit_ranking")
    with pytest.raises(Exception, match="not assigned to you"):
        m.predict(999999, rank_all(e_item), {}, "", None, api_name="/submit_ranking")
    read = RawSession(app, "trudy").call(fn_index(app, "on_review_open"), [target, "en"])
    assert read["success"] is False and "needs the role" in json.dumps(read)
    assert m.predict(api_name="/next_item")["item_id"] == m_item["item_id"]  # still only her own item
    assert store.counts()["rankings"] == before
    assert store.item_detail(target)["rankings"] == []
    res = e.predict(target, rank_all(e_item), {}, "", None, api_name="/submit_ranking")
    assert res["ok"] and not res["duplicate"]
    # no endpoint takes a user name: the identity is the login
    for ep in c_api(m)["named_endpoints"].values():
        assert not any("user" in p["parameter_name"] for p in ep["parameters"])


def c_api(c):
    return c.view_api(print_info=False, return_format="dict")


def test_bad_submissions_clear_message_nothing_stored(app):
    store = app["store"]
    c = client(app, "bob")
    it = c.predict(api_name="/next_item")
    ids = [r["id"] for r in it["responses"]]
    before = store.counts()["rankings"]
    for ranks, msg in [
        ({str(ids[0]): 1}, "missing rank for response"),
        ({**{str(i): 1 for i in ids}, "123456": 2}, "unknown response id"),
        ({str(i): 9 for i in ids}, "must be an integer from 1 to 4"),
        ({}, "ranks are missing"),
    ]:
        with pytest.raises(Exception, match=msg):
            c.predict(it["item_id"], ranks, {}, "", None, api_name="/submit_ranking")
    assert store.counts()["rankings"] == before
    assert store.progress("bob")["done"] == 0


def test_private_handlers_role_checked(app):
    store = app["store"]
    s = RawSession(app, "alice")
    for name, data in [("on_admin_refresh", []), ("on_review_refresh", []),
                       ("on_admin_add_user", ["mallory", "admin", "mallory-password"])]:
        msg = s.call(fn_index(app, name), data)
        assert msg["success"] is False, msg
        assert "needs the role" in json.dumps(msg), msg
    assert "mallory" not in [u["name"] for u in store.list_users()]
    # the same handlers work for the roles that own them
    assert RawSession(app, "rita").call(fn_index(app, "on_review_refresh"), [])["success"] is True
    assert RawSession(app, "root").call(fn_index(app, "on_admin_refresh"), [])["success"] is True
    # and gradio_client refuses private endpoints outright
    with pytest.raises(Exception):
        client(app, "root").predict(api_name="/on_admin_refresh")


def test_disabled_user_loses_access(app):
    store = app["store"]
    store.add_user("temp", "annotator", "pw-temp-123")
    c = client(app, "temp")
    assert c.predict(api_name="/next_item")["item_id"] is not None
    store.set_active("temp", False)
    with pytest.raises(Exception, match="unknown or disabled"):
        c.predict(api_name="/next_item")


def test_rendering_is_inert():
    for payload in XSS:
        out = render_text(payload)
        assert "<img" not in out and "<script" not in out and "<svg" not in out and "<iframe" not in out
        assert "&lt;" in out or "javascript" in out
    item = {"item_id": 1, "ext_id": "x", "lang": "<b>en</b>", "category": "<i>c</i>", "prompt": None, "source": "",
            "messages": [{"role": "user<script>", "content": XSS[0]}, {"role": "assistant", "content": XSS[1]},
                         {"role": "user", "content": XSS[2]}],
            "responses": [{"id": 1, "text": XSS[1], "model": "<b>m</b>"}, {"id": 2, "text": "ok", "model": ""}],
            "rankings": [{"annotator": "a", "ranks": {1: 1, 2: 2}, "flags": {1: ["harmful"]}, "rationale": XSS[0]}],
            "review": None}
    for html_out in (render_prompt(item, "en"), render_review(item, "zh")):
        for tag in ("<img", "<script", "<svg", "<iframe", "<b>", "<i>"):
            assert tag not in html_out


@pytest.mark.postgres
def test_whole_app_on_postgresql(pg_url, tmp_path):
    """The app served on a PostgreSQL URL (not only the store): gradio_client login, next_item,
    submit_ranking (and its idempotent retry), a reviewer's and an admin's handlers, and the
    `export` command on the same database. Skips with the reason when no server answers."""
    import subprocess
    import sys
    from pathlib import Path

    from gradio_client import Client

    store = Store(pg_url, overlap=2)
    assert store.engine.dialect.name == "postgresql"
    store.import_rows([aio.validate_item(r, "t") for r in make_items(3)])
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("root", "admin")):
        store.add_user(name, role, f"pw-{name}-123")
    demo, base, _ = launch(ServeConfig(db=pg_url, port=free_port(), overlap=2), block=False, store=store)
    try:
        app = {"url": base, "demo": demo}
        with pytest.raises(Exception):
            Client(base, auth=("alice", "wrong-password"), verbose=False)
        submitted = {}
        for name in ("alice", "bob"):
            c = Client(base, auth=(name, f"pw-{name}-123"), verbose=False)
            item = c.predict(api_name="/next_item")
            assert item["item_id"] is not None and len(item["responses"]) == 4
            ids = [r["id"] for r in item["responses"]]
            with pytest.raises(Exception, match="missing rank"):  # a bad submission stores nothing
                c.predict(item["item_id"], {str(ids[0]): 1}, {}, "", None, api_name="/submit_ranking")
            # the order shown is shuffled per annotator: rank by the text ("response k ..."),
            # alice best-first, bob in reverse
            k_of = {r["id"]: int(r["text"].split()[1]) for r in item["responses"]}
            ranks = {str(i): (k_of[i] + 1 if name == "alice" else 4 - k_of[i]) for i in ids}
            res = c.predict(item["item_id"], ranks, {str(ids[0]): ["unhelpful"]}, f"{name} on pg", None,
                            api_name="/submit_ranking")
            assert res["ok"] and not res["duplicate"] and res["progress"] == {"done": 1, "assigned": 1, "skipped": 0}
            again = c.predict(item["item_id"], ranks, {}, "", None, api_name="/submit_ranking")
            assert again["duplicate"] and again["ranking_id"] == res["ranking_id"]
            submitted[name] = item["item_id"]
            c.close()
        assert submitted["alice"] == submitted["bob"]  # overlap 2: the same prompt, fullest first
        assert store.counts()["rankings"] == 2
        # reviewer and admin handlers over the queue, as the browser calls them
        review = RawSession(app, "rita").call(fn_index(app, "on_review_refresh"), [])
        assert review["success"] is True and review["output"]["data"][0]["data"][0][0] == submitted["alice"]
        admin = RawSession(app, "root").call(fn_index(app, "on_admin_refresh"), [])
        assert admin["success"] is True
        rows = {r[0]: r for r in admin["output"]["data"][0]["data"]}
        assert rows["alice"][3] == 1 and rows["bob"][3] == 1 and rows["alice"][7] == -1.0  # reversed rankings
        # export through the command line against the same PostgreSQL database
        out = tmp_path / "pg.jsonl"
        root = Path(__file__).resolve().parents[2]
        p = subprocess.run([sys.executable, "-m", "annotation_ui", "export", "--format", "rankings", "--out", str(out),
                            "--db", pg_url], cwd=root, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        [row] = [json.loads(x) for x in out.read_text().splitlines()]
        assert row["ranking"] == [1, 1, 1, 1]  # Borda of a ranking and its reverse: all tie
        report = json.loads(out.with_suffix(".report.json").read_text())
        assert report["annotators"]["alice"]["rankings"] == 1 and report["flags"]["unhelpful"] == 2
    finally:
        demo.close()
        store.close()


def test_write_roundtrip_with_gradio_client(app):
    """The write API: a demonstration with the judges' advice, a retried submit stored once,
    another user's write item refused; the review handlers refuse annotators over HTTP and work
    for a reviewer, whose edit is exported instead of the original."""
    store = app["store"]
    b, a = client(app, "bob"), client(app, "alice")
    item = b.predict(api_name="/next_write_item")
    assert item["item_id"] is not None and item["write_prompt"] is False and item["prompt"].startswith("What is")
    res = b.predict(item["item_id"], "答案是 " + str(2 * int(item["ext_id"][1:])) + "。", None, None,
                    api_name="/submit_demonstration")
    assert res["ok"] and not res["duplicate"] and res["warnings"] == [{"code": "language", "expected": "en", "got": "zh"}]
    again = b.predict(item["item_id"], "another text", None, None, api_name="/submit_demonstration")
    assert again["duplicate"] and again["demonstration_id"] == res["demonstration_id"]
    a_item = a.predict(api_name="/next_write_item")
    assert a_item["item_id"] != item["item_id"]
    with pytest.raises(Exception, match="not assigned to you"):
        b.predict(a_item["item_id"], "mine", None, None, api_name="/submit_demonstration")
    with pytest.raises(Exception, match="not assigned to you"):
        a.predict(item["item_id"], "mine", None, None, api_name="/submit_demonstration")
    assert store.counts()["demonstrations"] == 1
    did = res["demonstration_id"]
    s = RawSession(app, "alice")
    for name, data in [("on_demo_refresh", ["all"]), ("on_demo_open", [did, "en"]),
                       ("on_demo_accept", [did, None, None, ""]), ("on_demo_edit", [did, None, "edited", ""])]:
        msg = s.call(fn_index(app, name), data)
        assert msg["success"] is False and "needs the role" in json.dumps(msg), (name, msg)
    assert store.demonstration_detail(did)["reviews"] == []
    r = RawSession(app, "rita")
    listed = r.call(fn_index(app, "on_demo_refresh"), ["pending"])
    assert listed["success"] and [row[0] for row in listed["output"]["data"][0]["data"]] == [did]
    opened = r.call(fn_index(app, "on_demo_open"), [did, "en"])
    assert opened["success"] and "&lt;img" in opened["output"]["data"][1] and "<img" not in opened["output"]["data"][1]
    edited = r.call(fn_index(app, "on_demo_edit"), [did, None, "The answer is " + str(2 * int(item["ext_id"][1:])) + ".", "English"])
    assert edited["success"] and edited["output"]["data"][0] == f"demonstration {did} edited"
    d = store.demonstration_detail(did)
    assert d["status"] == "edited" and d["response"].startswith("答案是") and d["reviews"][0]["reviewer"] == "rita"
