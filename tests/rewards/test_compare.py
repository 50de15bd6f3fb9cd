"""rewards.compare on small sets with known answers: a checkpoint right on exactly 3 of 4 pairs, a rule
on hand-made cases (ties count half), agreement, τ-b and Spearman by hand, calibration, errors."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rm_helpers import tiny_model_dir, write_jsonl  # noqa: E402

from rewards.compare import calibration, kendall_tau_b, main, spearman  # noqa: E402
from rewards.scoring import PairOutcome  # noqa: E402


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """A randomly initialised reward model directory (causal LM + a random score head, num_labels=1)."""
    from transformers import AutoModelForSequenceClassification

    from glm_base.loading import load_model_and_tokenizer

    root = tmp_path_factory.mktemp("cmp")
    base = tiny_model_dir(root / "base")
    model, tokenizer = load_model_and_tokenizer(base, model_class=AutoModelForSequenceClassification, num_labels=1)
    model.save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    return root / "rm"


def test_a_checkpoint_right_on_exactly_3_of_4_pairs_scores_0_75(reward_model, tmp_path):
    from rewards.compare import model_scores
    from rewards.data import read_preferences

    rows = [{"prompt": f"question {i}?", "responses": [f"answer {i} one", f"reply {i} two"], "ranking": [1, 2],
             "lang": "en" if i < 2 else "zh", "category": "a" if i % 2 else "b"} for i in range(4)]
    probe = write_jsonl(tmp_path / "probe.jsonl", rows)
    scores = model_scores(str(reward_model), read_preferences(probe)[0], 512, 8)
    assert all(a != b for a, b in scores)
    # rank the higher-scored response first in prompts 0-2 and last in prompt 3
    for i, (a, b) in enumerate(scores):
        right = (a > b) != (i == 3)
        rows[i]["ranking"] = [1, 2] if right else [2, 1]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    report = main([str(reward_model), "--data", str(data), "--out", str(tmp_path / "out"), "--bootstrap", "200"])
    r = report[str(reward_model)]
    assert r["accuracy"] == 0.75 and r["pairs"] == 4 and r["ties"] == 0.0
    assert r["by_lang"] == {"en": 1.0, "zh": 0.5} and r["by_category"] == {"a": 0.5, "b": 1.0}
    low, high = r["accuracy_ci"]
    assert 0.0 <= low <= 0.75 <= high == 1.0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved[str(reward_model)]["accuracy"] == 0.75
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report.json", "report.md", "accuracy_by_category.png", "reliability.png", "score_histograms.png"}


def test_a_rule_on_known_cases_counts_ties_as_half_right(tmp_path, capsys):
    rows = [
        {"prompt": "What is the capital?", "lang": "en", "category": "mix",  # clean chosen: right
         "responses": ["The capital is Paris.", "The capital 是 Paris 城市."], "ranking": [1, 2]},
        {"prompt": "What is the capital?", "lang": "en", "category": "mix",  # mixed chosen: wrong
         "responses": ["The capital 是 Paris 城市.", "The capital is Paris."], "ranking": [1, 2]},
        {"prompt": "What is the capital?", "lang": "en", "category": "other",  # both clean: a tie, half right
         "responses": ["The capital is Paris.", "Paris is the capital."], "ranking": [1, 2]},
    ]
    data = write_jsonl(tmp_path / "rules.jsonl", rows)
    report = main(["rules:mixing", "rules", "--rule-weights", "mixing=2", "--data", str(data), "--out",
                   str(tmp_path / "out"), "--bootstrap", "100"])
    r = report["rules:mixing"]
    assert r["accuracy"] == pytest.approx(0.5) and r["ties"] == pytest.approx(1 / 3)
    assert r["by_category"] == {"mix": 0.5, "other": 0.5}
    assert r["length"]["pairs_chosen_shorter"] == 1 and r["length"]["accuracy_chosen_shorter"] == 1.0
    # the combination with one rule at weight 2 orders everything as that rule does
    assert report["rules"]["accuracy"] == pytest.approx(0.5)
    assert r["agreement"]["rules"] == {"pairwise": 1.0, "kendall_tau": pytest.approx(1.0)}
    out = capsys.readouterr().out
    assert "rules:mixing" in out and "0.500" in out and "ties count as half right" in out
    md = (tmp_path / "out" / "report.md").read_text()
    assert "counts as half right" in md and "| `rules:mixing` | 0.500 |" in md


def test_kendall_tau_b_spearman_and_calibration_by_hand():
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = 1,2,3 ; y = 1,1,2: concordant 2, discordant 0, tied in y 1 -> 2 / sqrt(3 * 2)
    assert kendall_tau_b([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / 6 ** 0.5)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])  # nan: constant
    # two pairs with gap 0 (ties): both orientations observed 0.5 = σ(0): perfectly calibrated
    ties = [PairOutcome(0, "c", "en", 1.0, 1.0), PairOutcome(1, "c", "en", 2.0, 2.0)]
    assert calibration(ties)["ece"] == pytest.approx(0.0)
    # one pair won with gap 2: observed 1 at gap +2 (σ = 0.881), 0 at gap -2 (σ = 0.119)
    won = calibration([PairOutcome(0, "c", "en", 3.0, 1.0)])
    assert won["ece"] == pytest.approx(1 - 1 / (1 + 2.718281828 ** -2), rel=1e-6)
    # a pair the scorer gets wrong by 2: the preferred response is first at gap -2 (σ = 0.119)
    lost = calibration([PairOutcome(0, "c", "en", 1.0, 3.0)])
    assert [(b["gap"], b["observed"]) for b in lost["bins"]] == [(-2.0, 1.0), (2.0, 0.0)]
    assert lost["ece"] == pytest.approx(1 / (1 + 2.718281828 ** -2), rel=1e-6)


def test_a_sum_of_scorers_scores_with_the_weighted_sum(reward_model, tmp_path):
    """``DIR+2*rules:mixing``: every response's score is the model's plus twice the rule's, so the rule
    decides where it sees mixing (its penalty outweighs this model's score gaps) and the model breaks
    the rule's ties; the model is scored once for both scorers."""
    from rewards.compare import scores_for, scorer_terms
    from rewards.data import read_preferences

    rows = [{"prompt": "What is the capital?", "lang": "en", "category": "mix",
             "responses": ["The capital is Paris.", "The capital 是 Paris 城市."], "ranking": [1, 2]},
            {"prompt": "Name the capital.", "lang": "en", "category": "other",
             "responses": ["Paris is the capital.", "The capital is Paris."], "ranking": [1, 2]}]
    data = write_jsonl(tmp_path / "sum.jsonl", rows)
    spec = f"{reward_model}+20*rules:mixing"
    assert scorer_terms(spec) == [(1.0, str(reward_model)), (20.0, "rules:mixing")]
    assert scorer_terms(str(reward_model)) == [(1.0, str(reward_model))]
    report = main([str(reward_model), "rules:mixing", spec, "--data", str(data), "--out", str(tmp_path / "out"),
                   "--bootstrap", "50"])
    groups = read_preferences(data)[0]
    args = argparse.Namespace(rule_weights={}, world=None, max_length=512, batch_size=8)
    cache: dict = {}
    model, rule, total = (scores_for(s, groups, args, cache) for s in (str(reward_model), "rules:mixing", spec))
    assert total == [[m + 20 * r for m, r in zip(mg, rg)] for mg, rg in zip(model, rule)]
    assert set(cache) == {str(reward_model), "rules:mixing"}
    assert report[spec]["by_category"]["mix"] == 1.0  # the rule's call, whatever the model says
    model_right = (model[1][0] > model[1][1]) + 0.5 * (model[1][0] == model[1][1])
    assert report[spec]["by_category"]["other"] == report[str(reward_model)]["by_category"]["other"] == model_right
    assert report["rules:mixing"]["by_category"]["other"] == 0.5  # alone the rule ties that pair


@pytest.mark.parametrize("scorer, expected", [("rules:nonsense", "unknown rule 'rules:nonsense'"),
                                               ("/nowhere/rm", "reward model directory /nowhere/rm not found"),
                                               ("rules+x*rules:mixing", "scorer 'rules+x*rules:mixing': bad weight 'x'"),
                                               ("rules+", "scorer 'rules+': an empty term")])
def test_errors_end_with_one_error_line(tmp_path, capsys, scorer, expected):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "responses": ["a", "b"], "ranking": [1, 2]}])
    with pytest.raises(SystemExit) as exit_:
        main([scorer, "--data", str(data), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {expected}")
