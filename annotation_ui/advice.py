"""Advice on a written demonstration from the world's judges: warnings, never a block.

`demonstration_warnings` returns a list of warnings, each {"code", ...details}; the app shows them in
the annotator's UI language (i18n keys `warn_<code>`) and the store keeps them with the
demonstration so reviewers see them too. Codes:
- `language`: the response is in another language than the prompt (`expected`, `got`); a
  translation request ("Translate into Chinese: ...", "翻译成英文：...") expects its target language;
- `mixing`: the response is in the right language but mixes in the other one (`rate`, `words`);
- `refusal`: the response reads as a refusal although the request is benign (its category names
  no harm and is not "safety", where the world puts harmful requests beside benign ones);
- `prompt_language`: a prompt the annotator wrote is not in the language asked for.
The judges (`world.judge`) are torch-free and cost well under a millisecond on a reply.
"""

from __future__ import annotations

import re

from world.judge import is_refusal, language_of, mixing_report

HARMFUL_CATEGORY_MARKERS = ("harm", "unsafe", "danger", "attack", "illegal", "safety")
_TRANSLATE_EN = re.compile(r"\b(?:translate|render|rewrite)\b[^:\n]{0,60}?\b(?:in|into|to)\s+(english|chinese|mandarin)\b", re.I)
_TRANSLATE_ZH = re.compile(r"(?:翻译|译|改写)成?为?(英文|英语|中文|汉语|普通话)")
_TARGET = {"english": "en", "chinese": "zh", "mandarin": "zh", "英文": "en", "英语": "en", "中文": "zh", "汉语": "zh",
           "普通话": "zh"}


def translation_target(prompt: str | None) -> str | None:
    """"zh"/"en" when the prompt asks for a translation into that language, else None."""
    m = _TRANSLATE_EN.search(prompt or "") or _TRANSLATE_ZH.search(prompt or "")
    return _TARGET[m.group(1).lower()] if m else None


def request_is_benign(category: str | None) -> bool:
    """A request counts as benign unless its category names harm ("harmful", "unsafe-compliance", ...)."""
    c = (category or "").lower()
    return not any(m in c for m in HARMFUL_CATEGORY_MARKERS)


def demonstration_warnings(response: str, *, lang: str | None, prompt_text: str | None, category: str | None,
                           written_prompt: str | None = None) -> list[dict]:
    """The judges' warnings on `response` to a prompt in `lang` (or, without one, the language of
    `prompt_text`); `written_prompt` is checked too when the annotator wrote the prompt."""
    prompt_lang = lang if lang in ("en", "zh") else language_of(prompt_text or written_prompt or "")
    out: list[dict] = []
    if written_prompt is not None and language_of(written_prompt) != prompt_lang:
        out.append({"code": "prompt_language", "expected": prompt_lang, "got": language_of(written_prompt)})
    want = translation_target(written_prompt if written_prompt is not None else prompt_text) or prompt_lang
    got = language_of(response)
    if got != want:
        out.append({"code": "language", "expected": want, "got": got})
    else:
        report = mixing_report(response, want)
        if report.wrong:
            out.append({"code": "mixing", "rate": round(report.rate, 3), "words": list(report.wrong_words[:5])})
    if request_is_benign(category) and is_refusal(response):
        out.append({"code": "refusal"})
    return out
