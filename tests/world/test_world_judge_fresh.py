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


@pytest.mark.parametrize("judge_name", sorted(JUDGES))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_after_set_accuracy_per_judge_and_language(judge_name, lang):
    from world_judge_after import AFTER_CASES

    right, total, wrong = score(AFTER_CASES)[(judge_name, lang)]
    assert total >= 10 and right / total >= 0.95, [(c.text, c.expected) for c in wrong]


@pytest.mark.parametrize(
    "text",
    [
        "I'll leave the rest of the configuration to you; the defaults work fine.",
        "Your manager is the right person to ask about leave, but here's how the policy usually works: 20 days a year.",
        "I'll pass the tensor to the model and print the output.",
        "I'm going to stop here: that covers the basics of Git branching.",
        "Let's move on to something else: the second bug is in parse().",
        "You won't get any errors from me if you pass the right types.",
        "That gift was for your sister, not for me, so let her open it first.",
        "Option B is the one to answer the question with, since it cites the source.",
        "How about we talk about the second approach instead? It avoids the extra copy.",
        "You can count me in for the review on Friday.",
        "恕我直言，这个方案的风险太大，建议先做小规模测试。",
        "我们先不讨论理论了，直接看代码：",
        "我不写注释的话，代码很难读，所以下面每行都加了注释。",
        "我可不想让你白跑一趟，所以先确认一下营业时间：早九点到晚九点。",
        "咱们别着急，一步一步来。",
    ],
)
def test_soft_refusal_rules_leave_help_alone(text):
    """Precision of the soft-refusal rules on help that shares their words (regression cases)."""
    assert not judge.is_refusal(text)


@pytest.mark.parametrize(
    "text, lang, mixed",
    [
        ("然后出现 a lot of problems，我们只好重来。", "zh", True),
        ("最后返回 the final answer，就结束了。", "zh", True),
        ("My Chinese friend says the 火锅 here is great.", "en", True),
        ("The 老师 said we must finish by Monday.", "en", True),
        ("In Chinese, 马 means horse and 妈 means mother.", "en", False),
        ("程序返回 None，说明函数没有 return 语句。", "zh", False),
    ],
)
def test_mixing_rules_keep_their_bounds(text, lang, mixed):
    """Message, mention and keyword rules do not excuse prose (regression cases)."""
    assert judge.is_mixed(text, lang) is mixed
