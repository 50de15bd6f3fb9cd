"""A real browser: Debian's chromium driven by Playwright (executable_path; no browser download).

Logs in, checks that HTML/JS in the prompt and responses is shown as text and never runs, ranks
the responses with the keyboard shortcuts (ties included), submits, checks the database, switches
the UI to Chinese, and saves screenshots under tests/artifacts/.
"""
from __future__ import annotations

import shutil
import socket

import pytest

from annotation_ui import io as aio
from annotation_ui.app import ServeConfig, launch
from annotation_ui.store import Store

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


def test_browser_login_rank_submit(tmp_path, request):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    store = Store(url, overlap=1)
    store.import_rows([aio.validate_item(r, "t") for r in ITEMS])
    store.add_user("alice", "annotator", "pw-alice-123")
    demo, base, _ = launch(ServeConfig(db=url, port=free_port(), overlap=1), block=False, store=store)
    dialogs = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
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
            browser.close()
    finally:
        demo.close()
        store.close()
