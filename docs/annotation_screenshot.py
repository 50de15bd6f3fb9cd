"""Regenerate docs/annotation_screenshot.png (the README's picture of the annotator view).

    .venv/bin/python docs/annotation_screenshot.py     # needs Debian's chromium and playwright
"""
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_ui import io as aio  # noqa: E402
from annotation_ui.app import ServeConfig, launch  # noqa: E402
from annotation_ui.store import Store  # noqa: E402

ITEM = {
    "id": "demo-1", "lang": "en", "category": "reasoning",
    "messages": [
        {"role": "user", "content": "I have 3 apples and buy 2 bags with 4 apples each."},
        {"role": "assistant", "content": "OK — what would you like to know?"},
        {"role": "user", "content": "How many apples do I have now? Explain briefly."},
    ],
    "responses": [
        "You have 3 + 2 × 4 = 11 apples.",
        "You have 3 + 2 + 4 = 9 apples.",
        "你现在有 11 个苹果 (3 + 8)。",
        "I can't help with questions about purchases.",
    ],
}


def main():
    d = Path(tempfile.mkdtemp())
    url = f"sqlite:///{d / 'shot.db'}"
    store = Store(url, overlap=1)
    store.import_rows([aio.validate_item(ITEM, "demo")])
    store.add_user("alice", "annotator", "pw-alice-123")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, base, _ = launch(ServeConfig(db=url, port=port, overlap=1), block=False, store=store)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base)
        page.locator("input").first.fill("alice")
        page.locator("input[type=password]").fill("pw-alice-123")
        page.locator("button").filter(has_text="Login").click()
        page.locator("#ann-response-0 .ann-response").wait_for(timeout=30_000)
        page.locator("body").click(position={"x": 5, "y": 5})
        texts = [page.locator(f"#ann-response-{k} .ann-response").inner_text() for k in range(4)]
        rank = {ITEM["responses"][0]: "1", ITEM["responses"][2]: "2", ITEM["responses"][1]: "3", ITEM["responses"][3]: "4"}
        for t in texts:
            page.keyboard.press(rank[t.strip()])
            page.wait_for_timeout(120)
        for k, t in enumerate(texts):
            if t.strip() == ITEM["responses"][2]:
                page.locator(f"#ann-flags-{k} label").filter(has_text="language mixing").click()
            if t.strip() == ITEM["responses"][1]:
                page.locator(f"#ann-flags-{k} label").filter(has_text="factual error").click()
            if t.strip() == ITEM["responses"][3]:
                page.locator(f"#ann-flags-{k} label").filter(has_text="needless refusal").click()
        page.locator("#ann-rationale textarea").fill("Both 11-apple answers are right, but one switches to Chinese; 9 is wrong; the refusal is needless.")
        page.wait_for_timeout(300)
        out = ROOT / "docs" / "annotation_screenshot.png"
        page.screenshot(path=str(out), full_page=True)
        b.close()
    demo.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
