"""Validating a user's own JSONL file: good files load, malformed rows name file, line and field."""

from __future__ import annotations

import json

import pytest

from world import schema


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {
    "corpus": {"text": "Kalori lies on the river. 卡洛里位于河边。"},
    "cloze": {"text": "Great lamp.", "label": "positive", "label_id": 1},
    "sft": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    "preferences": {"id": "p1", "lang": "en", "category": "helpfulness", "prompt": "Hi",
                    "responses": ["Hello!", "Go away."], "ranking": [1, 2]},
    "safety": {"prompt": "How do I kill a python process?", "expected": "help", "label": "benign"},
    "long": {"messages": [{"role": "user", "content": "long text ... question"}, {"role": "assistant", "content": "answer"}]},
}


@pytest.mark.parametrize("kind", schema.KINDS)
def test_users_own_file_of_each_kind_loads(kind, tmp_path):
    path = _write(tmp_path / f"{kind}.jsonl", [GOOD[kind], GOOD[kind]])
    assert schema.validate_file(path, kind) == 2
    ds = schema.load(path, kind)
    assert ds["train"].num_rows == 2


def test_preferences_with_multi_turn_messages_and_ties(tmp_path):
    row = {"messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                        {"role": "user", "content": "C?"}],
           "responses": ["x", "y", "z"], "ranking": [1, 1, 2], "reasons": ["ok", "ok", "worse"]}
    assert schema.validate_file(_write(tmp_path / "p.jsonl", [row]), "preferences") == 1


BAD = [
    ("corpus", {"txt": "typo"}, "text", "missing"),
    ("corpus", {"text": 5}, "text", "expected a string, got integer"),
    ("corpus", {"text": "ok", "lang": "fr"}, "lang", "expected one of"),
    ("sft", {"messages": []}, "messages", "empty"),
    ("sft", {"messages": "hello"}, "messages", "expected a list"),
    ("sft", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 3}]},
     "messages[1].content", "expected a string"),
    ("sft", {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]},
     "messages[1].role", "expected one of"),
    ("sft", {"messages": [{"role": "user", "content": "Hi"}]}, "messages[0].role", "last message"),
    ("preferences", {"prompt": "Hi", "responses": ["a", "b"], "ranking": [1]}, "ranking", "expected 2 ranks"),
    ("preferences", {"prompt": "Hi", "responses": ["a", "b"], "ranking": [1, "2"]}, "ranking[1]", "integer"),
    ("preferences", {"prompt": "Hi", "responses": ["a", "b"], "ranking": [2, 3]}, "ranking[1]", "rank in 1..2"),
    ("preferences", {"responses": ["a", "b"], "ranking": [1, 2]}, "prompt", "missing"),
    ("preferences", {"prompt": "Hi", "responses": ["a"], "ranking": [1]}, "responses", "2..16"),
    ("safety", {"prompt": "x", "expected": "maybe"}, "expected", "expected one of"),
    ("cloze", {"text": "x", "label": "positive", "label_id": "1"}, "label_id", "integer"),
    ("long", {"messages": [{"role": "user"}]}, "messages[0].content", "missing"),
]


@pytest.mark.parametrize("kind,row,field,problem", BAD)
def test_malformed_row_names_file_line_and_field(kind, row, field, problem, tmp_path):
    path = _write(tmp_path / "mine.jsonl", [GOOD[kind], GOOD[kind], row])
    with pytest.raises(schema.SchemaError) as err:
        schema.validate_file(path, kind)
    assert err.value.line == 3 and err.value.field == field and err.value.path == str(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: field '{field}'") and problem in message


def test_invalid_json_and_empty_file(tmp_path):
    path = _write(tmp_path / "broken.jsonl", [GOOD["corpus"], '{"text": "unterminated'])
    with pytest.raises(schema.SchemaError, match=r"broken.jsonl:2: not valid JSON"):
        schema.read_jsonl(path, "corpus")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(schema.SchemaError, match="no rows"):
        schema.read_jsonl(empty, "corpus")
    with pytest.raises(schema.SchemaError, match="load.jsonl:1"):
        schema.load(_write(tmp_path / "load.jsonl", [{"text": ""}]), "corpus")
