"""The write task: prompts to write for, demonstrations with the judges' advice, review (accept /
edit / reject), SFT and prompt exports, concurrency, and the schema upgrade. Store tests run on
SQLite and PostgreSQL (skipped with the reason when no server answers)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from annotation_helpers import make_items, rank_all, write_jsonl
from annotation_ui import io as aio
from annotation_ui.advice import demonstration_warnings
from annotation_ui.handlers import Handlers
from annotation_ui.store import (
    AccessError, Store, StoreError, SubmissionError, current_revision, head_revision, make_engine,
    sqlite_integrity_check, upgrade,
)

ROOT = Path(__file__).resolve().parents[2]

WRITE_ROWS = [
    {"id": "w-en", "lang": "en", "category": "qa", "prompt": "What is the capital of France?"},
    {"id": "w-zh", "lang": "zh", "category": "qa", "prompt": "法国的首都是哪里？"},
    {"id": "w-chat", "lang": "en", "category": "chat",
     "messages": [{"role": "user", "content": "Hi! Can you help me plan a trip?"},
                  {"role": "assistant", "content": "Of course. Where would you like to go?"},
                  {"role": "user", "content": "Paris, for three days."}]},
    {"id": "w-own", "lang": "zh", "category": "coding"},  # the annotator writes the prompt too
]


def write_store(url: str, rows=WRITE_ROWS, **kw) -> Store:
    store = Store(url, **kw)
    store.import_rows([aio.validate_item(r, f"rows[{i}]", need_responses=None) for i, r in enumerate(rows)])
    return store


@pytest.fixture
def store(db_url):
    s = write_store(db_url, overlap=1)
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("root", "admin")):
        s.add_user(name, role, f"pw-{name}-123")
    yield s
    s.close()


def take(store: Store, user: str, ext_id: str) -> dict:
    """Lease write items to `user` until the one with `ext_id` comes (skipping the others)."""
    for _ in range(len(WRITE_ROWS) + 1):
        item = store.next_write_item(user)
        assert item["item_id"] is not None, f"{ext_id} never came to {user}"
        if item["ext_id"] == ext_id:
            return item
        store.skip_write(user, item["item_id"])
    raise AssertionError(ext_id)


# ---- advice ---------------------------------------------------------------------------------------
def test_advice_from_the_judges():
    en_q = "What is the capital of France?"
    assert demonstration_warnings("Paris is the capital of France.", lang="en", prompt_text=en_q, category="qa") == []
    assert demonstration_warnings("巴黎是法国的首都。", lang="en", prompt_text=en_q, category="qa") == [
        {"code": "language", "expected": "en", "got": "zh"}]
    # 8 English words and 3 Chinese characters: 3 of 11 units in the other language
    assert demonstration_warnings("The capital is Paris, 也就是 the city of light.", lang="en", prompt_text=en_q,
                                  category="qa") == [{"code": "mixing", "rate": round(3 / 11, 3), "words": ["也", "就", "是"]}]
    refusal = "I'm sorry, but I can't help with that."
    assert demonstration_warnings(refusal, lang="en", prompt_text=en_q, category="qa") == [{"code": "refusal"}]
    assert demonstration_warnings(refusal, lang="en", prompt_text="How do I pick a lock?", category="harmful") == []
    assert demonstration_warnings("抱歉，我不能提供这方面的帮助。", lang="zh", prompt_text="怎样撬开保险柜？",
                                  category="safety") == []  # the world's safety prompts include harmful ones
    # a translation request expects its target language, not the prompt's
    tr = "Translate into Chinese: Wilor Trading has 800 employees."
    assert demonstration_warnings("威奥贸易公司有800名员工。", lang="en", prompt_text=tr, category="translation") == []
    assert demonstration_warnings("Wilor Trading has 800 employees.", lang="en", prompt_text=tr, category="translation") == [
        {"code": "language", "expected": "zh", "got": "en"}]
    assert demonstration_warnings("Wilor has 800 employees.", lang="zh", prompt_text="请将这句话翻译成英文：威奥有800名员工。",
                                  category="translation") == []
    # no lang: the prompt's language is the target
    assert demonstration_warnings("Paris.", lang="", prompt_text="法国的首都是哪里？", category="qa")[0]["code"] == "language"
    assert demonstration_warnings("抱歉，我无法回答这个问题。", lang="zh", prompt_text=None, category="chat",
                                  written_prompt="How are you?") == [
        {"code": "prompt_language", "expected": "zh", "got": "en"}, {"code": "refusal"}]


# ---- import ---------------------------------------------------------------------------------------
def test_import_of_prompts_to_write_for(tmp_path, sqlite_url):
    store = Store(sqlite_url)
    try:
        mixed = write_jsonl(tmp_path / "mixed.jsonl", WRITE_ROWS + make_items(2, prefix="r"))
        assert aio.import_file(store, mixed) == (6, 0)
        assert aio.import_file(store, mixed) == (0, 6)
        c = store.counts()
        assert (c["write_items"], c["prompts"], c["responses"]) == (4, 2, 8)
        for rows, msg in [
            ([{"id": "x", "category": "qa", "prompt": "hi"}], r"bad.jsonl:1: field 'lang': expected one of \['en', 'zh'\]"),
            ([{"id": "x", "lang": "en"}], r"bad.jsonl:1: field 'category': a row without prompt"),
            ([{"id": "x", "lang": "en", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}],
             r"bad.jsonl:1: field 'messages\[1\].role': the conversation must end with a user turn"),
            ([WRITE_ROWS[0], {"id": "x", "lang": "en", "prompt": "a", "messages": [{"role": "user", "content": "b"}]}],
             r"bad.jsonl:2: expected at most one of 'prompt'"),
        ]:
            with pytest.raises(StoreError, match=msg):
                aio.import_file(store, write_jsonl(tmp_path / "bad.jsonl", rows))
        assert store.counts()["write_items"] == 4  # all or nothing
    finally:
        store.close()


# ---- writing --------------------------------------------------------------------------------------
def test_write_submit_advice_and_retry(store):
    item = take(store, "alice", "w-en")
    assert item["write_prompt"] is False and item["prompt"] == "What is the capital of France?"
    assert store.next_write_item("alice")["item_id"] == item["item_id"]  # the open item comes back
    res = store.submit_demonstration("alice", item["item_id"], "巴黎是法国的首都。", None, 30.0)
    assert res["ok"] and not res["duplicate"]
    assert res["warnings"] == [{"code": "language", "expected": "en", "got": "zh"}]  # advice, stored anyway
    again = store.submit_demonstration("alice", item["item_id"], "Paris.", None, 5.0)  # a retry after a timeout
    assert again["duplicate"] and again["demonstration_id"] == res["demonstration_id"]
    assert again["warnings"] == res["warnings"]
    [d] = store.demonstrations()
    assert (d["response"], d["annotator"], d["status"], d["time_spent_s"]) == ("巴黎是法国的首都。", "alice", "pending", 30.0)
    assert store.counts()["demonstrations"] == 1
    assert store.write_progress("alice")["done"] == 1


def test_write_prompt_item_needs_a_prompt(store):
    item = take(store, "alice", "w-own")
    assert item["write_prompt"] is True and item["prompt"] is None and item["lang"] == "zh"
    with pytest.raises(SubmissionError, match="write the prompt too"):
        store.submit_demonstration("alice", item["item_id"], "用 sorted() 函数。")
    with pytest.raises(SubmissionError, match="the response is empty"):
        store.submit_demonstration("alice", item["item_id"], "  ", "怎样在 Python 里排序列表？")
    res = store.submit_demonstration("alice", item["item_id"], "用内置的排序函数，它返回一个新的列表。",
                                     "怎样在 Python 里排序一个列表？")
    assert res["ok"] and res["warnings"] == []
    other = take(store, "bob", "w-en")
    with pytest.raises(SubmissionError, match="has its prompt; send only the response"):
        store.submit_demonstration("bob", other["item_id"], "Paris.", "my own prompt")
    assert store.counts()["demonstrations"] == 1


def test_another_users_write_item_is_refused(store):
    a = store.next_write_item("alice")
    b = store.next_write_item("bob")
    assert a["item_id"] != b["item_id"]  # write overlap 1
    with pytest.raises(AccessError, match="not assigned to you"):
        store.submit_demonstration("bob", a["item_id"], "mine now", "p" if a["write_prompt"] else None)
    with pytest.raises(AccessError, match="not assigned to you"):
        store.skip_write("bob", a["item_id"])
    h = Handlers(store)
    res = h.submit_demonstration("bob", "en", {"item_id": a["item_id"], "write_prompt": a["write_prompt"]}, "p", "mine")
    assert res["ok"] is False and "not assigned to you" in res["error"]
    with pytest.raises(AccessError, match="not assigned to you"):
        h.check_demonstration("bob", {"item_id": a["item_id"]}, "", "draft")
    with pytest.raises(AccessError, match="unknown or disabled"):
        store.submit_demonstration(None, a["item_id"], "x")
    assert store.counts()["demonstrations"] == 0
    assert store.next_write_item("alice")["item_id"] == a["item_id"]


def test_skip_and_lease_expiry(db_url):
    store = write_store(db_url, rows=WRITE_ROWS[:1], lease_seconds=0.5)
    try:
        for n in ("a", "b", "c"):
            store.add_user(n, "annotator", f"pw-{n}-123")
        item = store.next_write_item("a")
        store.skip_write("a", item["item_id"])
        assert store.next_write_item("a")["item_id"] is None  # never offered again to a
        assert store.next_write_item("b")["item_id"] == item["item_id"]
        assert store.next_write_item("c")["item_id"] is None  # b's lease holds the only slot
        import time

        time.sleep(0.7)
        assert store.next_write_item("c")["item_id"] == item["item_id"]  # b's lease expired
        res = store.submit_demonstration("b", item["item_id"], "Paris.")  # a late submit is still kept
        assert res["ok"] and store.write_progress("b") == {"done": 1, "assigned": 1, "skipped": 0}
    finally:
        store.close()


# ---- review and export ----------------------------------------------------------------------------
def submit_all(store: Store) -> dict:
    """alice answers w-en and w-chat, bob w-zh and writes w-own; returns {ext_id: demonstration id}."""
    answers = {"w-en": ("alice", "Paris is the capital of France.", None),
               "w-chat": ("alice", "Day 1: the Louvre. Day 2: Montmartre. Day 3: Versailles.", None),
               "w-zh": ("bob", "法国的首都是巴黎。", None),
               "w-own": ("bob", "用内置的排序函数。", "怎样在 Python 里排序一个列表？")}
    ids = {}
    for ext, (user, response, prompt) in answers.items():
        item = take(store, user, ext)
        ids[ext] = store.submit_demonstration(user, item["item_id"], response, prompt)["demonstration_id"]
    return ids


def test_review_edit_kept_beside_the_original_and_sft_export(store, tmp_path):
    ids = submit_all(store)
    h = Handlers(store)
    assert [r[0] for r in h.demo_list("rita", "pending")] == sorted(ids.values())
    with pytest.raises(AccessError, match="needs the role"):
        store.review_demonstration("alice", ids["w-en"], "accept")
    assert h.demo_review("rita", ids["w-en"], "accept") == f"demonstration {ids['w-en']} accepted"
    assert h.demo_review("rita", ids["w-zh"], "reject", note="too short") == f"demonstration {ids['w-zh']} rejected"
    assert "changes nothing" in h.demo_review("rita", ids["w-chat"], "edit", None, store.demonstration_detail(ids["w-chat"])["response"])
    edited = "Day 1: the Louvre and the Seine. Day 2: Montmartre. Day 3: Versailles."
    assert h.demo_review("root", ids["w-chat"], "edit", None, edited, "more detail") == f"demonstration {ids['w-chat']} edited"
    assert "only a prompt the annotator wrote" in h.demo_review("rita", ids["w-en"], "edit", "Another prompt?", "x")
    h.demo_review("rita", ids["w-own"], "edit", "怎样在 Python 里给一个列表排序？", None, "clearer prompt")

    d = store.demonstration_detail(ids["w-chat"])
    assert d["response"] == "Day 1: the Louvre. Day 2: Montmartre. Day 3: Versailles."  # the original, untouched
    assert d["status"] == "edited" and d["final_response"] == edited
    assert [(r["reviewer"], r["decision"], r["response"], r["note"]) for r in d["reviews"]] == [
        ("root", "edit", edited, "more detail")]
    own = store.demonstration_detail(ids["w-own"])
    assert own["written_prompt"] == "怎样在 Python 里排序一个列表？" and own["final_prompt"] == "怎样在 Python 里给一个列表排序？"
    # a later decision counts; the history stays
    h.demo_review("rita", ids["w-zh"], "accept", note="fine after all")
    assert [r["decision"] for r in store.demonstration_detail(ids["w-zh"])["reviews"]] == ["reject", "accept"]
    h.demo_review("rita", ids["w-zh"], "reject", note="no, too short")

    report = aio.export(store, tmp_path / "sft.jsonl", fmt="sft")
    rows = [json.loads(x) for x in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert rows == [
        {"id": "w-en", "lang": "en", "category": "qa", "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris is the capital of France."}]},
        {"id": "w-chat", "lang": "en", "category": "chat", "messages": WRITE_ROWS[2]["messages"] + [
            {"role": "assistant", "content": edited}]},
        {"id": "w-own", "lang": "zh", "category": "coding", "messages": [
            {"role": "user", "content": "怎样在 Python 里给一个列表排序？"},
            {"role": "assistant", "content": "用内置的排序函数。"}]},
    ]  # w-zh (rejected) is left out
    from world.schema import validate_file

    assert validate_file(tmp_path / "sft.jsonl", "sft") == 3
    assert (report["rows"], report["demonstrations"], report["demonstrations_exported"], report["edited"]) == (3, 4, 3, 2)
    assert report["by_status"] == {"accepted": 1, "edited": 2, "rejected": 1}

    aio.export(store, tmp_path / "prompts.jsonl", fmt="prompts")
    prompts = [json.loads(x) for x in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert prompts == [
        {"id": "w-en", "lang": "en", "category": "qa", "prompt": "What is the capital of France?"},
        {"id": "w-chat", "lang": "en", "category": "chat", "messages": WRITE_ROWS[2]["messages"]},
        {"id": "w-own", "lang": "zh", "category": "coding", "prompt": "怎样在 Python 里给一个列表排序？"},
    ]

    counts = {(r[0], r[1]): r[2:] for r in h.admin_demo_counts("root")}
    # written, pending, accepted, edited, rejected, warned
    assert counts == {("alice", "en"): [2, 0, 1, 1, 0, 0], ("bob", "zh"): [2, 0, 0, 1, 1, 0]}


def test_several_annotators_per_item_get_distinct_ids(sqlite_url):
    store = write_store(sqlite_url, rows=WRITE_ROWS[:1], write_overlap=2)
    try:
        for n in ("ann", "ben", "rev"):
            store.add_user(n, "reviewer" if n == "rev" else "annotator", f"pw-{n}-123")
        for n in ("ann", "ben"):
            item = store.next_write_item(n)
            did = store.submit_demonstration(n, item["item_id"], f"Paris, says {n}.")["demonstration_id"]
            store.review_demonstration("rev", did, "accept")
        rows, _ = aio.build_demonstration_export(store, fmt="sft")
        assert [r["id"] for r in rows] == ["w-en/ann", "w-en/ben"]
        prompts, _ = aio.build_demonstration_export(store, fmt="prompts")
        assert prompts == [{"id": "w-en", "lang": "en", "category": "qa", "prompt": "What is the capital of France?"}]
    finally:
        store.close()


def test_cli_import_prompts_and_export_sft(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "annotation_ui", *map(str, args), "--db", url], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert "imported 4 items" in cli("import", write_jsonl(tmp_path / "w.jsonl", WRITE_ROWS))
    store = Store(url)
    try:
        store.add_user("ann", "annotator", "pw-ann-123")
        store.add_user("rev", "reviewer", "pw-rev-123")
        item = take(store, "ann", "w-en")
        did = store.submit_demonstration("ann", item["item_id"], "Paris.")["demonstration_id"]
        store.review_demonstration("rev", did, "accept")
    finally:
        store.close()
    out = cli("export", "--format", "sft", "--out", tmp_path / "sft.jsonl")
    assert "wrote 1 sft rows" in out and "(1 of 1 demonstrations accepted or edited)" in out
    assert json.loads((tmp_path / "sft.jsonl").read_text())["messages"][-1] == {"role": "assistant", "content": "Paris."}
    # align.sft reads the export as it is: the demonstration is the only trained text
    from align.sft_data import load_sft_examples
    from glm_base.tokenizer import train_tokenizer

    tok = train_tokenizer(["What is the capital of France? Paris. The capital is Paris.\n"] * 20, vocab_size=300)
    (example,), report = load_sft_examples([tmp_path / "sft.jsonl"], tok, "glm4", max_length=256)
    assert report["examples"] == 1
    targets = [t for t in example.shift_labels if t != -100]  # the reply, then the end token
    assert tok.decode(targets[:-1]) == "Paris."
    cli("export", "--format", "prompts", "--out", tmp_path / "p.jsonl")
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"id": "w-en", "lang": "en", "category": "qa",
                                                              "prompt": "What is the capital of France?"}
    assert json.loads((tmp_path / "p.report.json").read_text())["format"] == "prompts"


# ---- concurrency ----------------------------------------------------------------------------------
def test_32_writers_at_once_nothing_lost(db_url):
    """32 annotators write 5 demonstrations each at the same time (every submit sent twice, as a
    client retrying after a timeout): exactly 160 demonstrations, one per (item, annotator), every
    acknowledged one stored, each item written once (write overlap 1), progress exact."""
    rows = [{"id": f"c{i}", "lang": "en", "category": "qa", "prompt": f"question {i}?"} for i in range(200)]
    store = write_store(db_url, rows=rows)
    users = [f"w{i:02d}" for i in range(32)]
    for u in users:
        store.add_user(u, "annotator", "pw-" + u)
    acked, errors = [], []
    barrier = threading.Barrier(len(users))

    def writer(u):
        try:
            barrier.wait()
            for k in range(5):
                item = store.next_write_item(u)
                res = store.submit_demonstration(u, item["item_id"], f"answer {k} by {u}")
                again = store.submit_demonstration(u, item["item_id"], f"answer {k} by {u}")
                assert not res["duplicate"] and again["duplicate"]
                assert again["demonstration_id"] == res["demonstration_id"]
                acked.append((u, item["item_id"], res["demonstration_id"]))
        except Exception as e:  # noqa: BLE001
            errors.append(f"{u}: {e!r}")

    threads = [threading.Thread(target=writer, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        stored = {(d["annotator"], d["item_id"]): d["id"] for d in store.demonstrations()}
        assert len(acked) == len(stored) == store.counts()["demonstrations"] == 160
        assert all(stored[(u, i)] == did for u, i, did in acked)
        assert len({i for _, i, _ in acked}) == 160  # no item written twice
        assert all(store.write_progress(u) == {"done": 5, "assigned": 5, "skipped": 0} for u in users)
        if store.is_sqlite:
            assert sqlite_integrity_check(db_url) == "ok"
    finally:
        store.close()


# ---- schema upgrade -------------------------------------------------------------------------------
def test_upgrade_from_0002_keeps_rankings(db_url, tmp_path):
    """A database at revision 0002 (before the write tables) with rankings and an adjudication is
    upgraded in place: the rankings export is byte-identical before and after, and writing works."""
    engine = make_engine(db_url)
    upgrade(engine, "0002")
    assert current_revision(engine) == "0002"
    engine.dispose()
    from annotation_ui.store import Store as _Store

    old = _Store(db_url, overlap=2, migrate=False)  # the ranking code only touches 0002's tables
    old.import_rows([aio.validate_item(r, "t") for r in make_items(3)])
    for n in ("a", "b"):
        old.add_user(n, "annotator", f"pw-{n}-123")
    old.add_user("r", "reviewer", "pw-r-123")
    for n, order in (("a", [1, 2, 3, 4]), ("b", [2, 1, 4, 3])):
        for _ in range(3):
            it = old.next_item(n)
            old.submit_ranking(n, it["item_id"], rank_all(it, order), None, f"{n} says", 10.0)
    first = old.items_with_rankings()[0]
    old.adjudicate("r", first["item_id"], {str(r["id"]): k + 1 for k, r in enumerate(first["responses"])}, "final")
    aio.export(old, tmp_path / "before.jsonl", fmt="pairs")
    before_items = old.items_with_rankings()
    old.close()
    with make_engine(db_url).connect() as c:
        tables = set(c.dialect.get_table_names(c))
    assert "demonstrations" not in tables and "rankings" in tables

    store = write_store(db_url, rows=WRITE_ROWS[:1], overlap=2)  # opening upgrades
    try:
        assert current_revision(store.engine) == head_revision() == "0003"
        assert store.items_with_rankings() == before_items
        aio.export(store, tmp_path / "after.jsonl", fmt="pairs")
        assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()
        assert store.counts()["rankings"] == 6 and store.counts()["reviews"] == 1
        item = store.next_write_item("a")
        assert store.submit_demonstration("a", item["item_id"], "Paris.")["ok"]
        with store.engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM demonstrations")).scalar() == 1
    finally:
        store.close()
