"""common.jsonl and common.rankings on hand-written inputs."""

from __future__ import annotations

import pytest

from common.jsonl import JsonlError, load_jsonl, read_jsonl, write_jsonl
from common.rankings import dense_ranking, ranking_pairs


def test_jsonl_round_trip_keeps_unicode_and_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    assert write_jsonl(path, [{"text": "你好"}, {"text": "hi"}]) == 2
    assert "你好" in path.read_text(encoding="utf-8")
    path.write_text(path.read_text() + "\n\n" + '{"text": "third"}\n')
    assert [(n, r["text"]) for n, r in read_jsonl(path)] == [(1, "你好"), (2, "hi"), (5, "third")]


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\nnot json\n', r"d\.jsonl:2: not valid JSON"),
    ('{"a": 1}\n[1, 2]\n', r"d\.jsonl:2: expected a JSON object, got list"),
    ('{"a": 1\n{"b": 2}\n', r"d\.jsonl:1: not valid JSON"),
])
def test_bad_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    with pytest.raises(JsonlError, match=message):
        load_jsonl(path, tolerate_torn_tail=True)


def test_only_an_unterminated_last_line_may_be_torn(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b')
    assert load_jsonl(path, tolerate_torn_tail=True) == [{"a": 1}]
    with pytest.raises(JsonlError, match=":2:"):
        load_jsonl(path)
    path.write_text('{"a": 1}\n{"a": 2, "b\n')  # terminated: not a torn append, a bad line
    with pytest.raises(JsonlError, match=":2:"):
        load_jsonl(path, tolerate_torn_tail=True)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_ranking_pairs_with_ties_are_the_strictly_ordered_pairs():
    # responses 0..3 ranked 2, 1, 2, 3: response 1 beats all; 0 and 2 tie and both beat 3
    pairs = [(p.chosen, p.rejected, p.margin) for p in ranking_pairs([2, 1, 2, 3])]
    assert pairs == [(0, 3, 1.0), (1, 0, 1.0), (1, 2, 1.0), (1, 3, 2.0), (2, 3, 1.0)]
    assert ranking_pairs([1, 1, 1]) == []
    assert len(ranking_pairs([1, 2, 3, 4])) == 6  # K choose 2


def test_dense_ranking_from_scores():
    assert dense_ranking([0.1, 0.9, 0.1, 0.5]) == [3, 1, 3, 2]
    assert dense_ranking([3, 1, 2], higher_is_better=False) == [3, 1, 2]
