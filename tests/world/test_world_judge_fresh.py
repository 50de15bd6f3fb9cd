"""The judges on the fresh hand-written set (tests/world/judge_fresh_cases.py), per judge and language."""

from __future__ import annotations

from collections import defaultdict

import pytest

from world import judge
from judge_fresh_cases import CASES, LANGUAGE, MIXING, REFUSAL
from world_judge_cases import LANGUAGE_CASES, MIXING_CASES, REFUSAL_CASES
from world_judge_heldout import HELDOUT_LANGUAGE, HELDOUT_MIXING, HELDOUT_REFUSAL

JUDGES = {
    "language": lambda c: judge.language_of(c.text),
    "mixing": lambda c: judge.is_mixed(c.text, c.lang),
    "refusal": lambda c: judge.is_refusal(c.text),
}


def score(cases=CASES):
    """{(judge, lang): (right, total, [wrong cases])} over ``cases``."""
    out = defaultdict(lambda: [0, 0, []])
    for c in cases:
        cell = out[(c.judge, c.lang)]
        cell[1] += 1
        if JUDGES[c.judge](c) == c.expected:
            cell[0] += 1
        else:
            cell[2].append(c)
    return {k: tuple(v) for k, v in sorted(out.items())}


def test_fresh_set_is_large_bilingual_and_new():
    assert len(CASES) >= 100
    for name in JUDGES:
        for lang in ("en", "zh"):
            assert sum(c.judge == name and c.lang == lang for c in CASES) >= 15, (name, lang)
    for name, cases in (("mixing", MIXING), ("refusal", REFUSAL)):
        for lang in ("en", "zh"):
            labels = {c.expected for c in cases if c.lang == lang}
            assert labels == {True, False}, (name, lang)
    older = {c[0] for c in LANGUAGE_CASES + MIXING_CASES + REFUSAL_CASES
             + HELDOUT_LANGUAGE + HELDOUT_MIXING + HELDOUT_REFUSAL}
    assert not older & {c.text for c in CASES}
    for c in CASES:
        assert c.lang in ("en", "zh") and c.judge in JUDGES and c.tag
        assert (c.expected in ("en", "zh")) if c.judge == "language" else isinstance(c.expected, bool)


def test_soft_refusals_and_review_classes_are_well_represented():
    tags = defaultdict(int)
    for c in CASES:
        tags[(c.tag, c.lang)] += 1
    for lang in ("en", "zh"):
        for tag in ("soft_redirect", "soft_topic_change", "soft_statement", "trap"):
            assert tags[(tag, lang)] >= 3, (tag, lang)
    for tag in ("zh_math", "zh_error", "zh_keyword", "zh_identifier"):
        assert tags[(tag, "zh")] >= 5, tag
    assert tags[("en_about_zh", "en")] >= 20


@pytest.mark.parametrize("judge_name", sorted(JUDGES))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_fresh_accuracy_per_judge_and_language(judge_name, lang):
    right, total, wrong = score()[(judge_name, lang)]
    assert right / total >= 0.95, [(c.text, c.expected) for c in wrong]
