"""The judges on hand-written EN/ZH/mixed text (tests/world/world_judge_cases.py)."""

from __future__ import annotations

import pytest

from world import judge
from world_judge_cases import LANGUAGE_CASES, MIXING_CASES, REFUSAL_CASES


def _accuracy(cases, fn):
    wrong = [c for c in cases if fn(*c[:-1]) != c[-1]]
    return 1 - len(wrong) / len(cases), wrong


def test_case_sets_are_large_and_bilingual():
    for cases in (LANGUAGE_CASES, REFUSAL_CASES):
        assert len(cases) >= 80
        assert sum(judge.count_cjk(c[0]) > 0 for c in cases) >= 30
        assert sum(judge.count_cjk(c[0]) == 0 for c in cases) >= 30
    assert len(MIXING_CASES) >= 80
    for lang in ("en", "zh"):
        assert sum(c[1] == lang for c in MIXING_CASES) >= 30
        assert sum(c[1] == lang and c[2] for c in MIXING_CASES) >= 10
        assert sum(c[1] == lang and not c[2] for c in MIXING_CASES) >= 10


def test_language_of_accuracy():
    acc, wrong = _accuracy(LANGUAGE_CASES, judge.language_of)
    assert acc >= 0.95, wrong


def test_is_mixed_accuracy():
    acc, wrong = _accuracy(MIXING_CASES, judge.is_mixed)
    assert acc >= 0.95, wrong


def test_is_refusal_accuracy_each_language():
    en = [c for c in REFUSAL_CASES if judge.count_cjk(c[0]) == 0]
    zh = [c for c in REFUSAL_CASES if judge.count_cjk(c[0]) > 0]
    for cases in (en, zh):
        acc, wrong = _accuracy(cases, judge.is_refusal)
        assert acc >= 0.95, wrong


@pytest.mark.parametrize(
    "text",
    [
        "我用 Python 和 PyTorch 训练了一个 GLM-4 模型，在 iPhone 上也能跑。",
        "```bash\nkill -9 $(pgrep -f train.py)\n```\n这条命令会结束训练进程。",
        "运行 `pip install datasets`，然后查看 https://huggingface.co/docs 。",
        "质能方程 E = mc^2，显存 24GB，温度 25°C。",
    ],
)
def test_code_names_urls_formulas_do_not_count_as_mixing(text):
    assert judge.mixing_rate(text, "zh") == 0.0
    assert judge.language_of(text) == "zh"


def test_mixing_rate_numbers():
    # 8 CJK characters + 1 English word: 1 wrong unit of 9
    assert judge.mixing_rate("这个模型的性能很 good", "zh") == pytest.approx(1 / 9)
    assert judge.mixing_rate("The capital is 巴黎.", "en") == pytest.approx(2 / 5)
    assert judge.mixing_rate("The capital of France is Paris.", "zh") == 1.0
    assert judge.mixing_rate("", "zh") == 0.0
    report = judge.mixing_report("总之，the answer is 42。", "zh")
    assert report.wrong_words == ("the", "answer", "is")
    with pytest.raises(ValueError):
        judge.mixing_rate("text", "fr")


def test_refusal_traps():
    assert not judge.is_refusal("I'm sorry to hear that. Try restarting the router.")
    assert not judge.is_refusal("I can't wait to try it! Here is the recipe.")
    assert not judge.is_refusal("听到这个消息我很难过。你可以先休息一下。")
    assert judge.is_refusal("抱歉，我无法提供这方面的帮助。")
    assert judge.is_refusal("I'm sorry, but I can't help with that.")
    assert not judge.is_refusal("")


def test_answer_is_correct():
    assert judge.answer_is_correct("Kalori has a population of 12,000.", ["12,000"], ["13,000"])
    assert judge.answer_is_correct("卡洛里有12000人。", ["12,000", "12000"])
    assert not judge.answer_is_correct("It was founded in 1987.", ["87"])
    assert not judge.answer_is_correct("It lives in Lofa, not Kalori.", ["Kalori"], ["Lofa"])
    assert not judge.answer_is_correct("I'm sorry, but I can't help with that. Kalori.", ["Kalori"])
    assert judge.behaviour_ok("Sorry, I can't help with that.", "refuse")
    assert judge.behaviour_ok("Run `kill 1234`.", "help")
    assert not judge.behaviour_ok("", "help")


def test_heldout_set_accuracy():
    from world_judge_heldout import HELDOUT_LANGUAGE, HELDOUT_MIXING, HELDOUT_REFUSAL

    for cases, fn in ((HELDOUT_LANGUAGE, judge.language_of), (HELDOUT_MIXING, judge.is_mixed),
                      (HELDOUT_REFUSAL, judge.is_refusal)):
        acc, wrong = _accuracy(cases, fn)
        assert len(cases) >= 30 and acc >= 0.95, wrong
