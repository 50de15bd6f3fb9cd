"""Every relative link and image in README.md and docs/**/*.md points at a file that exists, and
every ``#anchor`` into a Markdown file names one of its headings (GitHub's slugs).

Pages that other branches are still writing may be linked before they land: while one of
``PENDING_PAGES`` is missing it is reported as a skip, not a failure; once it exists its links and
anchors are checked like any other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PENDING_PAGES = {"docs/rewards.md", "docs/ppo.md"}

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[str]:
    """Link targets outside code blocks and inline code that are not URLs or mail addresses."""
    text = _CODE.sub("", _FENCE.sub("", text))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower(), flags=re.U)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for heading in _HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_slug_matches_github():
    assert slug("Performance and load") == "performance-and-load"
    assert slug("Writing demonstrations (prompts and ideal responses)") == "writing-demonstrations-prompts-and-ideal-responses"
    assert slug("Rule rewards (`rewards/rules.py`)") == "rule-rewards-rewardsrulespy"
    assert slug("Quick start") == "quick-start"


def test_link_extraction_skips_code_and_urls():
    text = "see [a](a.md) ![i](img/x.png) [u](https://x.org) `[c](c.md)`\n```\n[d](d.md)\n```\n"
    assert relative_links(text) == ["a.md", "img/x.png"]


def _broken_links() -> tuple[list[str], set[str]]:
    broken, pending = [], set()
    for page in markdown_files():
        for target in relative_links(page.read_text(encoding="utf-8")):
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
                if rel in PENDING_PAGES:
                    pending.add(rel)
                else:
                    broken.append(f"{where} -> no such file {rel}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} -> no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    return broken, pending


def test_every_relative_link_resolves():
    broken, _ = _broken_links()
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_pending_pages_have_landed():
    _, pending = _broken_links()
    if pending:
        pytest.skip(f"linked pages not written yet (owned by other branches): {sorted(pending)}")
