"""Reward-model data: pair expansion from rankings with ties, pairs rows, bad rows (error names file,
row and field; drop counts by reason), chat-template rendering and truncation, length balance, collation."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from rm_helpers import TEXTS, write_jsonl  # noqa: E402

from rewards.data import (PreferenceDataError, balance_lengths, collate_groups, encode_groups,  # noqa: E402
                          read_preferences)


@pytest.fixture(scope="module")
def tokenizer():
    from glm_base.tokenizer import train_tokenizer

    return train_tokenizer(TEXTS * 4, vocab_size=400)


def test_ranking_with_ties_expands_to_every_ordered_pair_with_rank_gap_margins(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "r.jsonl", [
        {"prompt": "q?", "responses": ["a", "b", "c", "d"], "ranking": [2, 1, 2, 3], "lang": "en", "category": "x"},
        {"prompt": "p?", "responses": ["e", "f"], "ranking": [2, 1]},
    ])
    groups, report = read_preferences(path)
    # b (rank 1) beats a, c, d; a and c (tied, no pair between them) beat d
    assert [(p.chosen, p.rejected, p.margin) for p in groups[0].pairs] == [
        (0, 3, 1.0), (1, 0, 1.0), (1, 2, 1.0), (1, 3, 2.0), (2, 3, 1.0)]
    assert (groups[0].lang, groups[0].category, groups[1].lang, groups[1].category) == ("en", "x", "unknown", "unknown")
    encoded, report = encode_groups(groups, tokenizer, 128, margin="rank_gap", margin_scale=0.5)
    assert [p[2] for p in encoded[0].pairs] == [0.5, 0.5, 0.5, 1.0, 0.5]
    assert report.to_dict()["pairs"] == 6 and report.groups == 2
    no_margin, _ = encode_groups(groups, tokenizer, 128)
    assert all(p[2] == 0.0 and p[3] == 1.0 for g in no_margin for p in g.pairs)
    batch = collate_groups(encoded, pad_id=tokenizer.pad_token_id)
    # each response is one row, encoded once; the second group's rows start at 4
    assert batch["input_ids"].shape[0] == 6
    assert batch["chosen"].tolist() == [0, 1, 1, 1, 2, 5] and batch["rejected"].tolist() == [3, 0, 2, 3, 3, 4]
    assert batch["weight"].tolist() == [1.0] * 6
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths == [len(ids) for g in encoded for ids in g.input_ids]


def test_rendering_is_the_chat_template_plus_the_end_token_and_left_truncation_keeps_the_reply(tmp_path, tokenizer):
    messages = [{"role": "user", "content": "first turn"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "How much do 4 clocks cost?"}]
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": messages, "responses": ["They cost 640 coins.", "No."],
                                               "ranking": [1, 2]}])
    groups, _ = read_preferences(path)
    encoded, _ = encode_groups(groups, tokenizer, 512)
    user = tokenizer.convert_tokens_to_ids("<|user|>")
    expected = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "They cost 640 coins."}],
                                             tokenize=True, return_dict=True)["input_ids"]
    assert encoded[0].input_ids[0] == list(expected) + [user]
    reply = tokenizer("They cost 640 coins.", add_special_tokens=False)["input_ids"]
    short, report = encode_groups(groups, tokenizer, len(reply) + 6)
    ids = short[0].input_ids[0]
    assert len(ids) == len(reply) + 6 and report.truncated == 1
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["[gMASK]", "<sop>"] and ids[-len(reply) - 1:-1] == reply
    with pytest.raises(PreferenceDataError, match=r"m.jsonl: row 1: field 'responses'.*too_long"):
        encode_groups(groups, tokenizer, len(reply) + 6, truncation="none")


def test_pairs_rows_trl_and_annotation_export_formats(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q?", "chosen": "yes", "rejected": "no", "margin": 2},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "assistant", "content": "go away"}]},
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]},
    ])
    groups, _ = read_preferences(path)
    assert [g.responses for g in groups] == [["yes", "no"], ["hello", "go away"], ["a", "b"]]
    assert [g.context for g in groups] == [[{"role": "user", "content": "q?"}], [{"role": "user", "content": "hi"}],
                                           [{"role": "user", "content": "q"}]]
    assert [(p.chosen, p.rejected, p.margin) for g in groups for p in g.pairs] == [(0, 1, 2.0), (0, 1, 1.0), (0, 1, 1.0)]


BAD = [
    ({"responses": ["a", "b"], "ranking": [1, 2]}, "prompt", "no_prompt"),
    ({"prompt": "q", "responses": ["a"], "ranking": [1]}, "responses", "one_response"),
    ({"prompt": "q", "responses": ["a", "a "], "ranking": [1, 2]}, "responses[1]", "duplicate_response"),
    ({"prompt": "q", "responses": ["a", "b", "c"], "ranking": [1, 2]}, "ranking", "ranking_length"),
    ({"prompt": "q", "responses": ["a", "b"], "ranking": [1, 5]}, "ranking[1]", "bad_rank"),
    ({"prompt": "q", "responses": ["a", "b"], "ranking": [2, 2]}, "ranking", "bad_rank"),
    ({"prompt": "q", "responses": ["a", "  "], "ranking": [1, 2]}, "responses[1]", "empty_response"),
    ({"prompt": "", "responses": ["a", "b"], "ranking": [1, 2]}, "prompt", "no_prompt"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "responses": ["a", "b"],
      "ranking": [1, 2]}, "messages[1].role", "bad_messages"),
    ({"prompt": "q", "chosen": "a", "rejected": "a"}, "rejected", "duplicate_response"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "margin": -1}, "margin", "bad_margin"),
]


@pytest.mark.parametrize("row,field,reason", BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_row_error_names_file_row_and_field(tmp_path, row, field, reason):
    good = {"prompt": "fine", "responses": ["x", "y"], "ranking": [1, 2]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(PreferenceDataError) as err:
        read_preferences(path)
    assert str(err.value).startswith(f"{path}: row 3: field '{field}'") and reason in str(err.value)
    assert (err.value.line, err.value.field, err.value.reason) == (3, field, reason)


def test_bad_rows_drop_counts_by_reason(tmp_path):
    good = {"prompt": "fine", "responses": ["x", "y"], "ranking": [1, 2]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good] + [b[0] for b in BAD])
    groups, report = read_preferences(path, bad_rows="drop")
    assert len(groups) == 1
    summary = report.to_dict()
    assert summary["rows"] == 1 + len(BAD) and summary["dropped_total"] == len(BAD)
    assert summary["dropped"] == {"bad_margin": 1, "bad_messages": 1, "bad_rank": 2, "duplicate_response": 2,
                                  "empty_response": 1, "no_prompt": 2, "one_response": 1,
                                  "ranking_length": 1}


def test_an_all_tied_ranking_is_skipped_and_counted_not_an_error(tmp_path):
    """Annotators may rank every response equal (the app exports it): no pair, no error."""
    good = {"prompt": "fine", "responses": ["x", "y"], "ranking": [1, 2]}
    tied = {"prompt": "q", "responses": ["a", "b", "c"], "ranking": [1, 1, 1]}
    for policy in ("error", "drop"):
        groups, report = read_preferences(write_jsonl(tmp_path / "t.jsonl", [good, tied, good]), bad_rows=policy)
        assert len(groups) == 2 and report.all_tied == 1 and report.to_dict()["dropped_total"] == 0


def test_length_balance_weights_make_chosen_longer_in_half_the_weighted_pairs(tmp_path, tokenizer):
    rows = [{"prompt": f"q{i}", "responses": ["a much longer answer with many words", "short"], "ranking": [1, 2]}
            for i in range(3)] + [{"prompt": "z", "responses": ["short", "a much longer answer with many words"],
                                   "ranking": [1, 2]}]
    groups, _ = read_preferences(write_jsonl(tmp_path / "l.jsonl", rows))
    encoded, _ = encode_groups(groups, tokenizer, 128)
    stats = balance_lengths(encoded)
    weights = [g.pairs[0][3] for g in encoded]
    assert weights == [pytest.approx(4 / 6)] * 3 + [pytest.approx(2.0)]
    assert sum(weights) == pytest.approx(4.0)  # total weight kept
    assert stats["chosen_longer_before"] == 0.75 and stats["chosen_longer_after"] == 0.5
    batch = collate_groups(encoded, tokenizer.pad_token_id)
    assert torch.allclose(batch["weight"], torch.tensor(weights))
