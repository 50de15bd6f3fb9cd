"""Store tests: each runs on SQLite and on PostgreSQL (skipped with a reason when absent)."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import text

from annotation_ui import io as aio
from annotation_ui.store import (
    AccessError, Store, StoreError, SubmissionError, WouldBlock, current_revision, head_revision, hash_password,
    make_engine, upgrade, verify_password,
)

from annotation_helpers import make_items, rank_all, write_jsonl


def by_text(item: dict) -> dict:
    """Rank responses by the number in their text ("response 0 ..." best); 2 and 3 tie."""
    out = {}
    for r in item["responses"]:
        k = int(r["text"].split()[1])
        out[str(r["id"])] = min(k + 1, 3)
    return out


@pytest.fixture
def store(db_url):
    s = Store(db_url, overlap=2)
    yield s
    s.close()


def test_password_hash_roundtrip():
    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and "correct" not in h
    assert verify_password("correct horse", h)
    assert not verify_password("correct horsE", h)
    assert not verify_password("x", "garbage")
    assert hash_password("a") != hash_password("a")  # salted


def test_users(store):
    store.add_user("alice", "annotator", "pw-alice-1")
    store.add_user("rev", "reviewer", "pw-rev-123")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("alice", "annotator", "x")
    with pytest.raises(StoreError, match="role must be one of"):
        store.add_user("bob", "superuser", "x")
    assert store.authenticate("alice", "pw-alice-1")
    assert not store.authenticate("alice", "wrong")
    assert not store.authenticate("nobody", "pw-alice-1")
    assert [u["name"] for u in store.list_users()] == ["alice", "rev"]
    store.set_active("alice", False)
    assert not store.authenticate("alice", "pw-alice-1")
    with pytest.raises(AccessError):
        store.next_item("alice")
    with pytest.raises(AccessError, match="needs the role"):
        store.require_role("rev", "admin")
    assert store.require_role("rev", "reviewer", "admin")["role"] == "reviewer"


def test_import_validation_and_idempotence(store, tmp_path):
    good = write_jsonl(tmp_path / "items.jsonl", make_items(5))
    assert aio.import_file(store, good) == (5, 0)
    assert aio.import_file(store, good) == (0, 5)
    assert store.counts()["responses"] == 20
    bad_rows = make_items(3, prefix="q")
    bad_rows[2]["responses"] = ["only one"]
    bad = write_jsonl(tmp_path / "bad.jsonl", bad_rows)
    with pytest.raises(StoreError, match=r"bad.jsonl:3: field 'responses'"):
        aio.import_file(store, bad)
    assert store.counts()["prompts"] == 5  # all or nothing
    both = {"id": "x", "prompt": "a", "messages": [{"role": "user", "content": "b"}], "responses": ["1", "2"]}
    with pytest.raises(StoreError, match="exactly one of 'prompt'"):
        aio.import_file(store, write_jsonl(tmp_path / "both.jsonl", [both]))
    dup = write_jsonl(tmp_path / "dup.jsonl", make_items(2, prefix="d") + make_items(1, prefix="d"))
    with pytest.raises(StoreError, match="already used"):
        aio.import_file(store, dup)
    (tmp_path / "broken.jsonl").write_text('{"id": "z", \n')
    with pytest.raises(StoreError, match=r"broken.jsonl:1: not valid JSON"):
        aio.import_file(store, tmp_path / "broken.jsonl")
    # a JSON list file also works
    (tmp_path / "list.json").write_text(json.dumps(make_items(2, prefix="L")))
    assert aio.import_file(store, tmp_path / "list.json") == (2, 0)


def test_assignment_overlap_skip_and_lease(db_url):
    store = Store(db_url, overlap=2, lease_seconds=0.6)
    try:
        store.import_rows([aio.validate_item(r, "t") for r in make_items(3)])
        for u in ("a", "b", "c"):
            store.add_user(u, "annotator", "pw-" + u)
        seen: dict[str, set] = {}
        for _ in range(3):
            for u in ("a", "b", "c"):
                it = store.next_item(u)
                if it["item_id"] is None:
                    continue
                assert it["item_id"] not in seen.setdefault(u, set())
                # the open assignment comes back until it is submitted
                assert store.next_item(u)["item_id"] == it["item_id"]
                seen[u].add(it["item_id"])
                store.submit_ranking(u, it["item_id"], rank_all(it))
        counts = store.counts()
        assert counts["rankings"] == 6  # 3 prompts x k=2, never more
        per_prompt = {}
        for item in store.items_with_rankings():
            names = [r["annotator"] for r in item["rankings"]]
            assert len(names) == len(set(names)) == 2
            per_prompt[item["item_id"]] = names
        assert len(per_prompt) == 3
        # skip: never offered again to the same user; the slot returns to the pool
        store.import_rows([aio.validate_item(r, "t") for r in make_items(1, prefix="s")])
        it = store.next_item("a")
        sid = it["item_id"]
        store.skip("a", sid)
        nxt = store.next_item("a")
        assert nxt["item_id"] is None
        with pytest.raises(AccessError):
            store.submit_ranking("a", sid, rank_all(it))
        # lease: b takes it and abandons it; after the lease, c and then a third user can take it
        assert store.next_item("b")["item_id"] == sid
        assert store.next_item("c")["item_id"] == sid
        store.add_user("d", "annotator", "pw-d")
        assert store.next_item("d")["item_id"] is None  # both slots leased
        time.sleep(0.8)
        assert store.next_item("d")["item_id"] == sid  # expired leases returned to the pool
        assert store.progress("d") == {"done": 0, "assigned": 1, "skipped": 0}
    finally:
        store.close()


def test_bad_submissions_store_nothing(store):
    store.import_rows([aio.validate_item(r, "t") for r in make_items(2)])
    store.add_user("alice", "annotator", "pw-alice")
    store.add_user("bob", "annotator", "pw-bob")
    it = store.next_item("alice")
    ids = [r["id"] for r in it["responses"]]
    pid = it["item_id"]
    cases = [
        ({}, "ranks are missing"),
        ({str(ids[0]): 1}, "missing rank for response"),
        ({**rank_all(it), "99999": 1}, "unknown response id"),
        ({**rank_all(it), str(ids[0]): 5}, "must be an integer from 1 to 4"),
        ({**rank_all(it), str(ids[0]): 0}, "must be an integer from 1 to 4"),
        ({**rank_all(it), str(ids[0]): 1.5}, "must be an integer from 1 to 4"),
        ({**rank_all(it), str(ids[0]): "best"}, "must be an integer from 1 to 4"),
        ([1, 2, 3, 4], "not a list"),
    ]
    for ranks, msg in cases:
        with pytest.raises(SubmissionError, match=msg):
            store.submit_ranking("alice", pid, ranks)
    with pytest.raises(SubmissionError, match="flags for response"):
        store.submit_ranking("alice", pid, rank_all(it), {str(ids[0]): ["rude"]})
    with pytest.raises(SubmissionError, match="item id must be an integer"):
        store.submit_ranking("alice", "abc", rank_all(it))
    with pytest.raises(AccessError, match="not assigned to you"):
        store.submit_ranking("bob", pid, rank_all(it))  # alice's item
    with pytest.raises(AccessError, match="not assigned to you"):
        store.submit_ranking("alice", pid + 1, rank_all(it))  # exists, not leased to alice
    with pytest.raises(AccessError):
        store.submit_ranking(None, pid, rank_all(it))
    assert store.counts()["rankings"] == 0
    assert store.progress("alice")["done"] == 0


def test_double_submit_is_idempotent(store):
    store.import_rows([aio.validate_item(r, "t") for r in make_items(1)])
    store.add_user("alice", "annotator", "pw-alice")
    it = store.next_item("alice")
    ids = [r["id"] for r in it["responses"]]
    ranks = {str(ids[0]): 1, str(ids[1]): 3, str(ids[2]): 3, str(ids[3]): 4}
    first = store.submit_ranking("alice", it["item_id"], ranks, {str(ids[1]): ["harmful", "unhelpful"]}, "why", 12.5)
    assert first["ok"] and not first["duplicate"]
    again = store.submit_ranking("alice", it["item_id"], ranks)
    assert again["ok"] and again["duplicate"] and again["ranking_id"] == first["ranking_id"]
    assert store.counts()["rankings"] == 1
    [item] = store.items_with_rankings()
    r = item["rankings"][0]
    assert r["ranks"] == {ids[0]: 1, ids[1]: 2, ids[2]: 2, ids[3]: 3}  # gaps closed, ties kept
    assert r["flags"][ids[1]] == ["harmful", "unhelpful"] and r["rationale"] == "why" and r["time_spent_s"] == 12.5


def test_concurrent_submits_threads(db_url):
    """Light concurrency on the store itself: 8 threads x 10 items, exact counts, no errors."""
    store = Store(db_url, overlap=4)
    store.import_rows([aio.validate_item(r, "t") for r in make_items(30)])  # spare slots: 120 for 80
    users = [f"u{i}" for i in range(8)]
    for u in users:
        store.add_user(u, "annotator", "pw-" + u)
    errors, done = [], []

    def work(u):
        try:
            for _ in range(10):
                it = store.next_item(u)
                res = store.submit_ranking(u, it["item_id"], rank_all(it))
                # a retried submit from the same client never duplicates
                again = store.submit_ranking(u, it["item_id"], rank_all(it))
                assert again["duplicate"]
                done.append(res["ranking_id"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(done) == len(set(done)) == 80
    assert store.counts()["rankings"] == 80
    for u in users:
        assert store.progress(u)["done"] == 10
    for item in store.items_with_rankings():
        assert len(item["rankings"]) <= 4
    store.close()


def test_concurrent_leases_respect_overlap_and_one_item_per_user(db_url):
    """16 users x 2 tabs lease at once from 6 prompts with k=2 (12 slots): never more than k
    annotators on a prompt, both tabs of a user get the same item, exactly 12 users get one."""
    store = Store(db_url, overlap=2)
    store.import_rows([aio.validate_item(r, "t") for r in make_items(6)])
    users = [f"u{i}" for i in range(16)]
    for u in users:
        store.add_user(u, "annotator", "pw-" + u)
    got: dict[str, list] = {u: [] for u in users}
    errors = []
    barrier = threading.Barrier(32)

    def tab(u):
        try:
            barrier.wait()
            got[u].append(store.next_item(u)["item_id"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=tab, args=(u,)) for u in users for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(set(v)) == 1 for v in got.values()), got  # one item per user, the same in both tabs
    served = [v[0] for v in got.values() if v[0] is not None]
    assert len(served) == 12
    assert max(served.count(pid) for pid in set(served)) == 2
    with store.engine.connect() as c:
        per_prompt = c.execute(text("SELECT prompt_id, count(*) FROM assignments WHERE status = 'active' "
                                    "GROUP BY prompt_id")).all()
    assert sorted(n for _, n in per_prompt) == [2] * 6
    store.close()


def test_nowait_raises_instead_of_waiting_and_writes_nothing(sqlite_url):
    """store.nowait(): a write that would wait (this process's lock, another process's writer)
    raises WouldBlock at once with nothing stored; the same call made normally then succeeds."""
    import sqlite3

    store = Store(sqlite_url, overlap=2)
    store.import_rows([aio.validate_item(r, "t") for r in make_items(3)])
    store.add_user("ann", "annotator", "pw-ann")
    with store.nowait():
        item = store.next_item("ann")  # nothing in the way: runs as usual
    # 1. another thread of this process is inside a write transaction
    store._write_lock.acquire()
    try:
        with store.nowait(), pytest.raises(WouldBlock):
            store.submit_ranking("ann", item["item_id"], rank_all(item))
    finally:
        store._write_lock.release()
    assert store.counts()["rankings"] == 0
    # 2. another process (here: another connection) holds SQLite's write lock and releases it 3 s
    # later: a call that waited (the busy timeout is 30 s) would then store the ranking; a nowait
    # call raises WouldBlock instead, with nothing stored
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(3.0, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        with store.nowait(), pytest.raises(WouldBlock):
            store.submit_ranking("ann", item["item_id"], rank_all(item))
        assert release.is_alive()  # raised while the lock was still held, not after waiting for it
        assert store.counts()["rankings"] == 0
    finally:
        release.join()
        other.close()
    assert store.submit_ranking("ann", item["item_id"], rank_all(item))["duplicate"] is False
    assert store.counts()["rankings"] == 1
    store.close()


def test_export_roundtrip_and_report(store, tmp_path):
    rows = make_items(4)
    store.import_rows([aio.validate_item(r, "t") for r in rows])
    for u in ("a", "b"):
        store.add_user(u, "annotator", "pw-" + u)
    store.add_user("rev", "reviewer", "pw-rev")
    for u in ("a", "b"):
        for _ in range(4):
            it = store.next_item(u)
            store.submit_ranking(u, it["item_id"], by_text(it), rationale="<b>r</b>")
    report = aio.export(store, tmp_path / "rankings.jsonl", fmt="rankings")
    out = [json.loads(line) for line in (tmp_path / "rankings.jsonl").read_text().splitlines()]
    assert len(out) == 4 and report["items_exported"] == 4
    for o in out:
        src = next(r for r in rows if r["id"] == o["id"])
        assert set(o) == {"id", "lang", "category", "prompt" if "prompt" in src else "messages", "responses", "ranking"}
        assert o["responses"] == src["responses"]
        assert o["ranking"] == [1, 2, 3, 3]
    assert report["kendalls_w"]["mean"] == pytest.approx(1.0)
    assert report["annotators"]["a"]["mean_tau_b_to_consensus"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "rankings.report.json").read_text())
    assert saved["rankings"] == 8
    # adjudication overrides the consensus
    item = store.items_with_rankings()[0]
    with pytest.raises(AccessError):
        store.adjudicate("a", item["item_id"], {str(r["id"]): 1 for r in item["responses"]})
    rev = {str(r["id"]): 4 - k for k, r in enumerate(item["responses"])}
    store.adjudicate("rev", item["item_id"], rev, "reversed")
    aio.export(store, tmp_path / "pairs.jsonl", fmt="pairs")
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    first = [p for p in pairs if p["id"] == item["ext_id"]]
    assert len(first) == 6  # 4 responses, all distinct ranks after adjudication
    assert {"prompt", "chosen", "rejected", "margin"} <= set(first[0])
    top = max(first, key=lambda p: p["margin"])
    assert top["chosen"] == item["responses"][3]["text"] and top["margin"] == 3.0
    others = [p for p in pairs if p["id"] != item["ext_id"]]
    assert len(others) == 3 * 5  # 1 < 2 < 3 = 3: five ordered pairs, the tie skipped
    msg = [p for p in pairs if isinstance(p["prompt"], list)]
    assert msg and msg[0]["chosen"][0]["role"] == "assistant"


def test_schema_upgrade_in_place(db_url):
    """A database at revision 0001 (before reviews and ui_lang) is upgraded with its data intact."""
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.execution_options(write=True).begin() as c:
        c.execute(text("INSERT INTO users (name, role, password_hash, active, created_at) "
                       "VALUES ('old', 'annotator', :h, :t, CURRENT_TIMESTAMP)"), {"h": hash_password("pw-old"), "t": True})
        c.execute(text("INSERT INTO prompts (ext_id, lang, category, source, prompt, created_at) "
                       "VALUES ('p-old', 'en', 'qa', 'legacy', 'hello?', CURRENT_TIMESTAMP)"))
        pid = c.execute(text("SELECT id FROM prompts WHERE ext_id = 'p-old'")).scalar()
        for k in range(2):
            c.execute(text("INSERT INTO responses (prompt_id, position, text, model, created_at) "
                           "VALUES (:p, :k, :t, 'm', CURRENT_TIMESTAMP)"), {"p": pid, "k": k, "t": f"r{k}"})
    engine.dispose()
    store = Store(db_url)  # upgrades on open
    try:
        assert current_revision(store.engine) == head_revision() != "0001"
        assert store.authenticate("old", "pw-old")
        assert store.user_info("old")["ui_lang"] == "en"
        it = store.next_item("old")
        assert it["ext_id"] == "p-old"
        store.submit_ranking("old", it["item_id"], rank_all(it))
        store.add_user("r", "reviewer", "pw-r")
        store.adjudicate("r", it["item_id"], rank_all(it))  # the reviews table exists now
        assert store.counts()["reviews"] == 1
    finally:
        store.close()


def test_sqlite_pragmas(sqlite_url):
    store = Store(sqlite_url)
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.close()


def test_import_refuses_items_with_more_responses_than_the_app_shows(store, tmp_path):
    """An item with more responses than the UI's slots (MAX_RESPONSES = 6) could be leased but never
    ranked, leaving its annotator stuck on it: import refuses it, naming the file and row, and
    imports nothing from that file (all or nothing); the store refuses it too (generate's path)."""
    from annotation_ui.store import MAX_RESPONSES

    assert MAX_RESPONSES == 6
    rows = make_items(3, n_responses=6, prefix="ok") + make_items(1, n_responses=7, prefix="big")
    path = write_jsonl(tmp_path / "wide.jsonl", rows)
    with pytest.raises(StoreError, match=r"wide.jsonl:4: field 'responses': 7 responses; the app shows at most 6"):
        aio.import_file(store, path)
    assert store.counts()["prompts"] == 0
    with pytest.raises(StoreError, match="item 'big0' has 7 responses"):
        store.import_rows([{**rows[3], "prompt": "p", "messages": None}])
    assert aio.import_file(store, write_jsonl(tmp_path / "six.jsonl", rows[:3])) == (3, 0)
    store.add_user("ann", "annotator", "pw-ann")
    assert len(store.next_item("ann")["responses"]) == 6
