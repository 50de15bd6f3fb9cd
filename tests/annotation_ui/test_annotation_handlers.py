"""The app's handlers called directly (no server, no browser): identity from the login argument
only, role checks on every handler, another user's item refused."""
from __future__ import annotations

import inspect

import pytest

from annotation_helpers import make_items
from annotation_ui import io as aio
from annotation_ui.handlers import Handlers
from annotation_ui.store import AccessError, Store

REVIEWER_ONLY = [("review_list", ()), ("review_open", (1,)), ("review_save", (1, "", [1, 2])),
                 ("demo_list", ("all",)), ("demo_open", (1,)), ("demo_review", (1, "accept"))]
ADMIN_ONLY = [("admin_progress", ()), ("admin_demo_counts", ()), ("admin_user", ("add", "zed", "admin", "pw-zed-12345")),
              ("admin_export", ("rankings",))]


@pytest.fixture
def h(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}", overlap=1)
    store.import_rows([aio.validate_item(r, "t") for r in make_items(4)])
    store.import_rows([aio.validate_item(r, "t", need_responses=None) for r in [
        {"id": "w1", "lang": "en", "category": "qa", "prompt": "What is the capital of France?"},
        {"id": "w2", "lang": "zh", "category": "chat"},
    ]])
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("root", "admin")):
        store.add_user(name, role, f"pw-{name}-123")
    yield Handlers(store)
    store.close()


def test_every_handler_takes_the_login_first_and_no_other_identity():
    for name, fn in inspect.getmembers(Handlers, inspect.isfunction):
        if name.startswith("_") or name == "__init__":
            continue
        params = list(inspect.signature(fn).parameters)
        assert params[:2] == ["self", "username"], (name, params)
        assert not any("user" in p for p in params[2:]), (name, params)


def test_identity_is_the_login(h):
    assert h.load("alice")["user"] == {"name": "alice", "role": "annotator", "ui_lang": "en"}
    for who in (None, "", "nobody"):
        with pytest.raises(AccessError):
            h.load(who)
    h.store.set_active("bob", False)
    with pytest.raises(AccessError, match="unknown or disabled"):
        h.next_write("bob")


@pytest.mark.parametrize("method,args", REVIEWER_ONLY + ADMIN_ONLY)
def test_annotators_are_refused_by_reviewer_and_admin_handlers(h, method, args):
    before = h.store.counts()
    with pytest.raises(AccessError, match="needs the role"):
        getattr(h, method)("alice", *args)
    assert h.store.counts() == before  # nothing written (no user "zed", no review)


@pytest.mark.parametrize("method,args", ADMIN_ONLY)
def test_reviewers_are_refused_by_admin_handlers(h, method, args):
    with pytest.raises(AccessError, match="needs the role admin"):
        getattr(h, method)("rita", *args)
    assert "zed" not in [u["name"] for u in h.store.list_users()]


def test_roles_that_own_a_handler_may_call_it(h):
    assert h.review_list("rita") == [] and h.demo_list("root", "all") == []
    assert [r[0] for r in h.admin_progress("root")] == ["alice", "bob", "rita", "root"]
    assert h.admin_user("root", "add", "zed", "annotator", "pw-zed-12345") == "added annotator zed"


def test_another_users_ranking_item_is_refused(h):
    a = h.load("alice")["item"]
    b = h.load("bob")["item"]
    assert a["item_id"] != b["item_id"]  # overlap 1: alice's item is hers alone
    forged = {"item_id": a["item_id"], "response_ids": [r["id"] for r in a["responses"]], "item": a}
    res = h.submit_ranking("bob", "en", forged, [1, 2, 3, 4], [[]] * 4, "mine now")
    assert res["ok"] is False and "not assigned to you" in res["error"] and res["item"] is None
    res = h.skip_ranking("bob", "en", forged)
    assert "not assigned to you" in res["status"] and res["item"]["item_id"] == b["item_id"]
    assert h.store.counts()["rankings"] == 0
    assert h.store.next_item("alice")["item_id"] == a["item_id"]  # still hers, not skipped
    res = h.submit_ranking("alice", "en", forged, [1, 2, 3, 4], [[]] * 4, "")
    assert res["ok"] and h.store.counts()["rankings"] == 1


def test_submit_maps_screen_positions_to_response_ids(h):
    item = h.load("alice")["item"]
    ids = [r["id"] for r in item["responses"]]
    state = {"item_id": item["item_id"], "response_ids": ids, "item": item}
    res = h.submit_ranking("alice", "zh", state, ["2", "1", "2", "4"], [["harmful"], [], [], []], "why")
    assert res["ok"] and res["status"] == f"已保存条目 {item['item_id']}。"
    [ranking] = h.store.item_detail(item["item_id"])["rankings"]
    assert ranking["ranks"] == {ids[0]: 2, ids[1]: 1, ids[2]: 2, ids[3]: 3}  # 4 closes the gap to 3
    assert ranking["flags"][ids[0]] == ["harmful"] and ranking["rationale"] == "why"
