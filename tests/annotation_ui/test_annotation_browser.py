"""A real browser: Debian's chromium driven by Playwright (executable_path; no browser download).

Logs in, checks that HTML/JS in the prompt and responses is shown as text and never runs, ranks
the responses with the keyboard shortcuts (ties included), submits, checks the database, switches
the UI to Chinese, and saves screenshots under tests/artifacts/.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
from pathlib import Path

import pytest

from annotation_ui import io as aio
from annotation_ui.app import ServeConfig, launch
from annotation_ui.store import Store

# Not imported from conftest: with several test folders holding a conftest.py, `import conftest`
# resolves to whichever came first.
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _skip_reason() -> str | None:
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium; .ci/services.sh does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


ITEMS = [
    {"id": "xss-1", "lang": "en", "category": "security",
     "prompt": 'Summarise this page: <img src=x onerror="window.__xss=1;alert(1)"> <script>window.__xss=2</script>',
     "responses": ['<b>Bold claim</b> <img src=x onerror="window.__xss=3">',
                   "<script>window.__xss=4;alert('x')</script>The page is empty.",
                   "It shows an image tag that tries to run JavaScript; I will not execute it.",
                   '<a href="javascript:window.__xss=5">click me</a>']},
    {"id": "zh-1", "lang": "zh", "category": "qa", "prompt": "北京是哪个国家的首都？",
     "responses": ["北京是中国的首都。", "Beijing is the capital of 中国.", "我不能回答这个问题。"]},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chromium():
    """Skips with the reason when chromium or playwright is missing; makes the artefact folder."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def app_in_browser(store: Store, url: str, overlap: int):
    """The app served on `store` and a headless chromium: yields (base URL, browser), then closes
    the browser, the server and the store."""
    from playwright.sync_api import sync_playwright

    demo, base, _ = launch(ServeConfig(db=url, port=free_port(), overlap=overlap), block=False, store=store)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                yield base, browser
            finally:
                browser.close()
    finally:
        demo.close()
        store.close()


def test_browser_login_rank_submit(chromium, tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    store = Store(url, overlap=1)
    store.import_rows([aio.validate_item(r, "t") for r in ITEMS])
    store.add_user("alice", "annotator", "pw-alice-123")
    dialogs = []
    with app_in_browser(store, url, overlap=1) as (base, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(base, wait_until="domcontentloaded")
        page.locator("input").first.wait_for(timeout=30_000)
        inputs = page.locator("input")
        inputs.nth(0).fill("alice")
        page.locator("input[type=password]").fill("pw-alice-123")
        page.locator("button").filter(has_text="Login").click()
        page.locator("#ann-response-0 .ann-response").wait_for(timeout=30_000)
        page.wait_for_timeout(500)

        # HTML/JS in prompt and responses is displayed as text and never runs
        prompt_text = page.locator("#ann-prompt").inner_text()
        assert "<img src=x onerror=" in prompt_text and "<script>" in prompt_text
        shown = "\n".join(page.locator(".ann-response").all_inner_texts())  # order is shuffled per annotator
        for text in ITEMS[0]["responses"]:
            assert text in shown
        assert page.evaluate("window.__xss") is None
        assert page.locator("#ann-prompt img, #ann-prompt script, .ann-response img, .ann-response a").count() == 0

        # rank with the keyboard: 1-9 rank the selected response and move on; a tie at 2
        page.locator("body").click(position={"x": 5, "y": 5})
        for key in ["2", "1", "2", "3"]:
            page.keyboard.press(key)
            page.wait_for_timeout(150)
        page.locator("#ann-flags-0 input[type=checkbox]").first.check()  # "harmful" on A
        page.locator("#ann-rationale textarea").fill("B refuses to run the script and says why.")
        page.screenshot(path=str(ARTIFACTS / "annotation_annotator.png"), full_page=True)
        page.locator("#ann-submit").click()
        page.locator("#ann-status").filter(has_text="Saved item").wait_for(timeout=30_000)
        assert page.evaluate("window.__xss") is None and dialogs == []

        item = store.items_with_rankings()[0]
        ranking = item["rankings"][0]
        assert ranking["annotator"] == "alice"
        assert ranking["rationale"] == "B refuses to run the script and says why."
        assert sorted(ranking["ranks"].values()) == [1, 2, 2, 3]
        assert sum(1 for f in ranking["flags"].values() if f == ["harmful"]) == 1
        assert ranking["time_spent_s"] > 0

        # the next item is shown; switch the UI to Chinese
        page.locator("#ann-lang label").filter(has_text="中文").click()
        page.get_by_text("提交").first.wait_for(timeout=15_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "annotation_annotator_zh.png"), full_page=True)


REVIEW_ITEMS = [
    {"id": "rv-agree", "lang": "en", "category": "qa", "prompt": "What is 2 + 2?",
     "responses": ["4", "5", "22"]},
    {"id": "rv-split", "lang": "en", "category": "chat",
     "messages": [{"role": "user", "content": "Write a haiku about rain."},
                  {"role": "assistant", "content": "Sure, in English or Chinese?"},
                  {"role": "user", "content": "English. <script>window.__xss=7</script>"}],
     "responses": ["Soft rain on the roof / the gutters hum their one note / night forgets the dust",
                   "Rain rain go away, come again another day.",
                   '<img src=x onerror="window.__xss=8">I cannot write poems.']},
]


def _login(browser, base: str, name: str, password: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(base, wait_until="domcontentloaded")
    page.locator("input[type=password]").wait_for(timeout=30_000)
    page.locator("input").nth(0).fill(name)
    page.locator("input[type=password]").fill(password)
    page.locator("button").filter(has_text="Login").click()
    page.locator("#ann-progress").wait_for(timeout=30_000)
    return ctx, page


def _cells(table, n_rows: int, n_cols: int) -> list[list[str]]:
    """The text of a gr.Dataframe's cells (Gradio marks each with data-testid cell-ROW-COL)."""
    return [[table.get_by_test_id(f"cell-{r}-{c}").inner_text().strip() for c in range(n_cols)] for r in range(n_rows)]


def test_browser_reviewer_and_admin_views(chromium, tmp_path):
    """A reviewer sees the items sorted by disagreement with everyone's rankings and adjudicates one;
    an admin sees each annotator's progress and agreement; an annotator sees neither tab."""
    url = f"sqlite:///{tmp_path / 'rv.db'}"
    store = Store(url, overlap=3)
    store.import_rows([aio.validate_item(r, "t") for r in REVIEW_ITEMS])
    names = ["ann1", "ann2", "ann3"]
    for n in names:
        store.add_user(n, "annotator", f"pw-{n}-123")
    store.add_user("rita", "reviewer", "pw-rita-123")
    store.add_user("root", "admin", "pw-root-123")
    # "rv-agree": everyone agrees (4 > 22 > 5 by position 0 > 2 > 1); "rv-split": a full cycle
    split_orders = {"ann1": [1, 2, 3], "ann2": [2, 3, 1], "ann3": [3, 1, 2]}
    ids = {}
    for n in names:
        for _ in range(2):
            it = store.next_item(n)
            pos = {r["id"]: REVIEW_ITEMS[0 if it["ext_id"] == "rv-agree" else 1]["responses"].index(r["text"])
                   for r in it["responses"]}
            order = [1, 3, 2] if it["ext_id"] == "rv-agree" else split_orders[n]
            store.submit_ranking(n, it["item_id"], {str(rid): order[p] for rid, p in pos.items()}, None,
                                 f"{n} on {it['ext_id']}", 30.0)
            ids[it["ext_id"]] = it["item_id"]
    split = store.item_detail(ids["rv-split"])
    dialogs = []
    with app_in_browser(store, url, overlap=3) as (base, browser):

        # an annotator has no Review/Admin tabs
        ctx, page = _login(browser, base, "ann1", "pw-ann1-123")
        assert page.get_by_role("tab", name="Review").count() == 0
        assert page.get_by_role("tab", name="Admin").count() == 0
        ctx.close()

        # reviewer: the disagreement list, everyone's rankings, an adjudication
        ctx, page = _login(browser, base, "rita", "pw-rita-123")
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        assert page.get_by_role("tab", name="Admin").count() == 0
        page.get_by_role("tab", name="Review").click()
        page.locator("#rv-refresh").click()
        table = page.locator("#rv-table")
        table.get_by_test_id("cell-1-1").wait_for(timeout=30_000)
        # most disagreement first: the cycle (W = 0) above the unanimous item (W = 1)
        assert _cells(table, 2, 5) == [[str(ids["rv-split"]), "rv-split", "3", "0", "false"],
                                       [str(ids["rv-agree"]), "rv-agree", "3", "1", "false"]]
        table.get_by_test_id("cell-0-1").click()  # a click on a row picks its item
        page.wait_for_function(f"document.querySelector('#rv-item input').value === '{ids['rv-split']}'",
                               timeout=30_000)
        page.locator("#rv-open").click()
        detail = page.locator("#rv-detail")
        detail.locator("table.ann-review-table").wait_for(timeout=30_000)
        text = detail.inner_text()
        for n in names:
            assert n in text and f"{n} on rv-split" in text
        assert "<script>window.__xss=7</script>" in text  # shown as text
        for r in REVIEW_ITEMS[1]["responses"]:
            assert r in text
        assert detail.locator("img, script").count() == 0
        # adjudicate: the haiku best, the nursery rhyme second, the refusal last
        for k, r in enumerate(split["responses"]):
            rank = str(REVIEW_ITEMS[1]["responses"].index(r["text"]) + 1)
            page.locator(f"#rv-rank-{k} label").filter(has_text=rank).first.click()
        page.get_by_label("Adjudication note").fill("The haiku follows the form; the refusal is needless.")
        page.locator("#rv-save").click()
        page.get_by_text(f"adjudication of item {ids['rv-split']} saved").wait_for(timeout=30_000)
        page.locator("#rv-refresh").click()
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "annotation_reviewer.png"), full_page=True)
        review = store.item_detail(ids["rv-split"])["review"]
        assert review["reviewer"] == "rita" and review["note"].startswith("The haiku")
        by_text = {r["text"]: review["ranks"][r["id"]] for r in split["responses"]}
        assert [by_text[t] for t in REVIEW_ITEMS[1]["responses"]] == [1, 2, 3]
        assert page.evaluate("window.__xss") is None
        ctx.close()

        # admin: every user's progress and agreement
        ctx, page = _login(browser, base, "root", "pw-root-123")
        page.get_by_role("tab", name="Admin").click()
        page.locator("#ad-refresh").click()
        table = page.locator("#ad-table")
        table.get_by_test_id("cell-4-0").wait_for(timeout=30_000)
        rows = {r[0]: r for r in _cells(table, 5, 8)}
        assert set(rows) == {"ann1", "ann2", "ann3", "rita", "root"}
        for n in names:
            # name, role, active, done, assigned, skipped, mean seconds, tau-b to the others' consensus
            assert rows[n][:7] == [n, "annotator", "true", "2", "2", "0", "30"], rows[n]
            # tau-b 1 on rv-agree; on the cycle the other two's Borda consensus is the exact
            # reverse of one's own ranking (tau-b -1): mean 0
            assert float(rows[n][7]) == pytest.approx(0.0)
        page.screenshot(path=str(ARTIFACTS / "annotation_admin.png"), full_page=True)
        ctx.close()
    assert dialogs == []


WRITE_ITEMS = [
    {"id": "wr-en", "lang": "en", "category": "qa",
     "prompt": 'What is the capital of France? <img src=x onerror="window.__xss=11">'},
]


def test_browser_write_review_and_export(chromium, tmp_path):
    """An annotator writes a demonstration in the wrong language: Check shows the judges' warning,
    Submit stores it anyway (with the warning); a reviewer edits it (the original kept beside the
    edit), and the SFT export holds the edit. Untrusted text stays inert throughout."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(url, overlap=1)
    store.import_rows([aio.validate_item(r, "t", need_responses=None) for r in WRITE_ITEMS])
    store.add_user("wanda", "annotator", "pw-wanda-123")
    store.add_user("rita", "reviewer", "pw-rita-123")
    dialogs = []
    with app_in_browser(store, url, overlap=1) as (base, browser):
        ctx, page = _login(browser, base, "wanda", "pw-wanda-123")
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.get_by_role("tab", name="Write").click()
        item_text = page.locator("#wr-item").inner_text()
        assert '<img src=x onerror="window.__xss=11">' in item_text
        page.locator("#wr-response textarea").fill("巴黎是法国的首都。")
        page.locator("#wr-check").click()
        page.locator("#wr-advice").filter(has_text="looks like Chinese").wait_for(timeout=30_000)
        page.locator("#wr-submit").click()
        page.locator("#wr-status").filter(has_text="Saved demonstration").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "annotation_write.png"), full_page=True)
        [d] = store.demonstrations()
        assert d["response"] == "巴黎是法国的首都。" and d["warnings"][0]["code"] == "language"
        assert page.evaluate("window.__xss") is None
        ctx.close()

        ctx, page = _login(browser, base, "rita", "pw-rita-123")
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.get_by_role("tab", name="Review").click()
        page.locator("#dm-refresh").click()
        page.locator("#dm-table").get_by_test_id("cell-0-0").wait_for(timeout=30_000)
        page.locator("#dm-id input").fill(str(d["id"]))
        page.locator("#dm-open").click()
        page.locator("#dm-detail .ann-demo-original").wait_for(timeout=30_000)
        assert page.locator("#dm-detail img").count() == 0
        page.locator("#dm-response textarea").fill("Paris is the capital of France.")
        page.locator("#dm-note textarea").fill("answer in English")
        page.locator("#dm-edit").click()
        page.locator("#dm-status").filter(has_text="edited").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "annotation_review_demo.png"), full_page=True)
        ctx.close()
    edited = Store(url)
    try:
        d = edited.demonstration_detail(d["id"])
        assert d["response"] == "巴黎是法国的首都。" and d["final_response"] == "Paris is the capital of France."
        assert d["reviews"][0]["reviewer"] == "rita" and d["reviews"][0]["note"] == "answer in English"
        rows, _ = aio.build_demonstration_export(edited, fmt="sft")
        assert rows[0]["messages"][-1] == {"role": "assistant", "content": "Paris is the capital of France."}
    finally:
        edited.close()
    assert dialogs == []
