"""Script-level text statistics shared by the generator and the judges.

No tokenizer is involved: lengths of long-context examples are measured with
:func:`approx_tokens`, a deterministic estimate (one token per Chinese character, one per four
characters of anything else), so numbers do not move when someone trains a new tokenizer.
"""

from __future__ import annotations

import math
import re

# CJK Unified Ideographs (+ extension A and compatibility ideographs).
CJK_CHAR = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK_CHAR}]")
# Chinese/fullwidth punctuation that ends a sentence or a clause.
ZH_SENTENCE_END = "。！？"
EN_SENTENCE_END = ".!?"

_SENTENCE_RE = re.compile(r"[^。！？.!?\n]+(?:[。！？]+|[.!?]+(?=\s|$)|$)|\n")


def count_cjk(text: str) -> int:
    """Number of Chinese characters (ideographs) in ``text``."""
    return len(CJK_RE.findall(text))


def approx_tokens(text: str) -> int:
    """Tokenizer-free length estimate: 1 per CJK character + 1 per 4 other non-space characters."""
    cjk = count_cjk(text)
    other = sum(1 for ch in text if not ch.isspace()) - cjk
    return cjk + math.ceil(max(other, 0) / 4)


def split_sentences(text: str) -> list[str]:
    """Split EN/ZH text into sentences at ``. ! ?`` (followed by space/end), ``。！？`` and newlines.

    The concatenation of the returned pieces (with whitespace stripped) covers every non-space
    character of ``text``; empty pieces are dropped.
    """
    out = []
    for m in _SENTENCE_RE.finditer(text):
        piece = m.group(0).strip()
        if piece:
            out.append(piece)
    return out
