"""SFT examples: exact labels on hand-written conversations (GLM-4 and GLM-1), validation, truncation,
loading (the world by default)."""

from __future__ import annotations

import json

import pytest

from common.errors import UserError
from sft_helpers import small_tokenizer

from align.sft_data import (
    REPLY_END_TOKEN,
    SFTDataArgs,
    SFTDataError,
    build_examples,
    load_from_args,
    load_sft_examples,
    render_messages,
    show_example,
)
from glm_base.tokenizer import special_token_ids

X = -100
SINGLE = [{"role": "user", "content": "Where is the lighthouse?"},
          {"role": "assistant", "content": "On the northern cliff."}]
MULTI = [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "灯塔在哪里？"},
         {"role": "assistant", "content": "在北边。"}]


@pytest.fixture(scope="module")
def tok():
    return small_tokenizer()


def enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# --- GLM-4 ------------------------------------------------------------------------------------
def test_glm4_single_turn_exact(tok):
    ids = special_token_ids(tok)
    ex = render_messages(SINGLE, tok, "glm4")
    prompt = enc(tok, "[gMASK]<sop><|user|>\nWhere is the lighthouse?<|assistant|>\n")
    reply = enc(tok, "On the northern cliff.")
    assert ex.input_ids == prompt + reply + [ids.user]
    assert ex.labels == [X] * len(prompt) + reply + [ids.user]
    assert ex.shift_labels == [X] * (len(prompt) - 1) + reply + [ids.user, X]
    assert ex.position_ids == list(range(len(ex.input_ids)))
    assert ex.part_a_length is None and ex.num_targets == len(reply) + 1
    assert tok.convert_tokens_to_ids(REPLY_END_TOKEN) == ids.user


def test_glm4_multi_turn_exact_and_printed(tok):
    ids = special_token_ids(tok)
    ex = render_messages(MULTI, tok, "glm4")
    p1 = enc(tok, "[gMASK]<sop><|system|>\nBe brief.<|user|>\nHi<|assistant|>\n")
    r1 = enc(tok, "Hello!")
    p2 = enc(tok, "\n灯塔在哪里？<|assistant|>\n")  # after the <|user|> that ends reply 1
    r2 = enc(tok, "在北边。")
    assert ex.input_ids == p1 + r1 + [ids.user] + p2 + r2 + [ids.user]
    assert ex.labels == [X] * len(p1) + r1 + [ids.user] + [X] * len(p2) + r2 + [ids.user]
    shown = show_example(ex, tok)
    print("\nGLM-4 example, targets in « »:\n" + shown)
    assert shown == ("[gMASK]<sop><|system|>\nBe brief.<|user|>\nHi<|assistant|>\n«Hello!<|user|>»\n灯塔在哪里？"
                     "<|assistant|>\n«在北边。<|user|>»")


def test_glm4_tool_call_and_observation(tok):
    ids = special_token_ids(tok)
    msgs = [{"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "content": "Fine."}]
    ex = render_messages(msgs, tok, "glm4")
    assert show_example(ex, tok) == ('[gMASK]<sop><|user|>\nHi<|assistant|>«f\n{"a": 1}<|observation|>»\nok'
                                     "<|assistant|>\n«Fine.<|user|>»")
    assert ex.labels[-1] == ids.user


# --- GLM-1 ------------------------------------------------------------------------------------
def _expected_glm1(tok, prompt_text: str, reply_text: str):
    ids = special_token_ids(tok)
    p, r = enc(tok, prompt_text), enc(tok, reply_text)
    n, m = len(p), len(r)
    return dict(
        input_ids=p + [ids.gmask, ids.sop] + r,
        shift_labels=[X] * (n + 1) + r + [ids.eop],
        position_ids=[list(range(n + 1)) + [n] * (m + 1), [0] * (n + 1) + list(range(1, m + 2))],
        part_a_length=n + 1,
    )


def test_glm1_single_turn_exact(tok):
    ex = render_messages(SINGLE, tok, "glm1")
    want = _expected_glm1(tok, "<|user|>\nWhere is the lighthouse?<|assistant|>\n", "On the northern cliff.")
    assert ex.to_dict() == want
    assert ex.num_targets == len(enc(tok, "On the northern cliff.")) + 1


def test_glm1_multi_turn_trains_the_last_reply_only(tok):
    ex = render_messages(MULTI, tok, "glm1")
    prompt = "<|system|>\nBe brief.<|user|>\nHi<|assistant|>\nHello!<|user|>\n灯塔在哪里？<|assistant|>\n"
    want = _expected_glm1(tok, prompt, "在北边。")
    assert ex.to_dict() == want
    shown = show_example(ex, tok)
    print("\nGLM-1 example, Part A ‖ Part B targets in « »:\n" + shown)
    assert shown == ("<|system|>\nBe brief.<|user|>\nHi<|assistant|>\nHello!<|user|>\n灯塔在哪里？<|assistant|>\n"
                     "[gMASK] ‖ «在北边。<eop>»")


def test_glm1_row_matches_the_model_layout(tok):
    """The example's layout is the one GLMForCausalLM's blank-infilling mask expects: Part B's first
    target is predicted at <sop>, which sees the whole of Part A."""
    ex = render_messages(SINGLE, tok, "glm1")
    ids = special_token_ids(tok)
    a = ex.part_a_length
    assert ex.input_ids[a - 1] == ids.gmask and ex.input_ids[a] == ids.sop
    assert ex.shift_labels[a] == ex.input_ids[a + 1]  # target at <sop> = the reply's first token


# --- validation -------------------------------------------------------------------------------
BAD_ROWS = [
    ({"id": 1}, "no_messages", "messages"),
    ({"messages": []}, "no_messages", "messages"),
    ({"messages": ["hi"]}, "bad_message", "messages[0]"),
    ({"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "unknown_role", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]},
     "bad_content", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]},
     "empty_content", "messages[1].content"),
    ({"messages": [{"role": "user", "content": "x<|assistant|>y"}, {"role": "assistant", "content": "z"}]},
     "special_token", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no_assistant", "messages"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                   {"role": "user", "content": "z"}]}, "last_not_assistant", "messages[2].role"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                   {"role": "assistant", "content": "z"}]}, "bad_order", "messages[2].role"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "",
                                                      "tool_calls": [{"function": {"arguments": "{}"}}]}]},
     "bad_tool_call", "messages[1].tool_calls[0]"),
    ({"prompt": "Hello?"}, "no_messages", "completion"),
    ({"prompt": "Hello?", "completion": ["Hi"]}, "bad_content", "completion"),
    ({"prompt": " ", "completion": "Hi"}, "empty_content", "prompt"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("row,reason,field", BAD_ROWS, ids=[f"{r}-{i}" for i, (_, r, _) in enumerate(BAD_ROWS)])
def test_bad_row_error_names_file_line_field(tmp_path, tok, row, reason, field):
    path = _write(tmp_path / "mine.jsonl", [{"messages": SINGLE}, row])
    with pytest.raises(SFTDataError) as info:
        load_sft_examples([path], tok)
    err = info.value
    assert (err.path, err.line, err.field, err.reason) == (str(path), 2, field, reason)
    assert str(err).startswith(f"{path}:2: field '{field}': ")


def test_bad_rows_dropped_and_counted(tmp_path, tok):
    rows = [{"messages": SINGLE}] + [row for row, _, _ in BAD_ROWS] + [{"messages": MULTI}]
    path = _write(tmp_path / "mine.jsonl", rows)
    examples, report = load_sft_examples([path], tok, bad_rows="drop")
    assert [ex.source for ex in examples] == [f"{path}:1", f"{path}:{len(rows)}"]
    assert report["rows"] == len(rows) and report["examples"] == 2
    assert report["dropped"] == {"bad_content": 2, "bad_message": 1, "bad_order": 1, "bad_tool_call": 1,
                                 "empty_content": 2,
                                 "last_not_assistant": 1, "no_assistant": 1, "no_messages": 3,
                                 "special_token": 1, "unknown_role": 1}
    assert report["target_tokens"] == sum(ex.num_targets for ex in examples)


# --- length -----------------------------------------------------------------------------------
LONG = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is the lighthouse? " * 6},
        {"role": "assistant", "content": "On the northern cliff. " * 6},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao."}]


@pytest.mark.parametrize("arch", ["glm4", "glm1"])
def test_truncation_policies(tok, arch):
    full = render_messages(LONG, tok, arch)
    last_two = render_messages(LONG[:1] + LONG[3:], tok, arch)
    last_one = render_messages(LONG[:1] + LONG[5:], tok, arch)
    assert len(full) > len(last_two) > len(last_one)
    rows = [(7, {"messages": LONG})]
    with pytest.raises(SFTDataError, match=r"mine.jsonl:7: field 'messages': .*max_length is") as info:
        build_examples(rows, tok, "mine.jsonl", arch, max_length=len(full) - 1)
    assert info.value.reason == "too_long"
    examples, report = build_examples(rows, tok, "mine.jsonl", arch, max_length=len(full) - 1, truncation="drop")
    assert examples == [] and report.dropped == {"too_long": 1}
    # truncate_left drops the earliest round (system kept) and stops as soon as the row fits
    examples, report = build_examples(rows, tok, "mine.jsonl", arch, max_length=len(last_two),
                                      truncation="truncate_left")
    assert examples[0].input_ids == last_two.input_ids
    assert (report.truncated_rows, report.rounds_removed) == (1, 1)
    examples, report = build_examples(rows, tok, "mine.jsonl", arch, max_length=len(last_one),
                                      truncation="truncate_left")
    assert examples[0].input_ids == last_one.input_ids and report.rounds_removed == 2
    # the last round alone is too long: a bad row (error, or dropped under bad_rows=drop)
    with pytest.raises(SFTDataError, match="only the last round left"):
        build_examples(rows, tok, "mine.jsonl", arch, max_length=len(last_one) - 1, truncation="truncate_left")
    examples, report = build_examples(rows, tok, "mine.jsonl", arch, max_length=len(last_one) - 1,
                                      truncation="truncate_left", bad_rows="drop")
    assert examples == [] and report.dropped == {"too_long": 1}


def test_single_turn_rows_train_as_a_user_and_an_assistant_turn(tmp_path, tok):
    """TRL's prompt-completion rows and the world's safety rows (prompt + reference) render as the
    chat row with the same two turns."""
    chat = render_messages([{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi there."}], tok)
    path = _write(tmp_path / "single.jsonl", [{"prompt": "Hello?", "completion": "Hi there."},
                                               {"prompt": "Hello?", "reference": "Hi there.", "label": "benign"}])
    examples, report = load_sft_examples([path], tok)
    assert report["examples"] == 2
    for ex in examples:
        assert ex.input_ids == chat.input_ids and ex.labels == chat.labels


# --- loading ----------------------------------------------------------------------------------
def test_world_is_the_default_data(tmp_path, tok, monkeypatch):
    import world.default as default_data

    monkeypatch.setattr(default_data, "DEFAULT_ROOT", tmp_path / "world")
    args = SFTDataArgs(max_length=4096, truncation="drop")
    train, report = load_from_args(args, tok, "glm4")
    rows = sum(1 for _ in open(tmp_path / "world" / "tiny-seed0" / "sft" / "train.jsonl", encoding="utf-8"))
    assert report["rows"] == rows and report["examples"] == len(train) == rows - sum(report["dropped"].values())
    assert report["files"] == [str(tmp_path / "world" / "tiny-seed0" / "sft" / "train.jsonl")]
    assert all(ex.num_targets > 1 for ex in train)
    evals, _ = load_from_args(args, tok, "glm1", split="eval")
    assert evals and all(ex.part_a_length for ex in evals)
    # the user's own training files and no eval files: no eval set
    mine = _write(tmp_path / "mine.jsonl", [{"messages": SINGLE}])
    own = SFTDataArgs(train_files=[str(mine)])
    assert len(load_from_args(own, tok, "glm4")[0]) == 1
    assert load_from_args(own, tok, "glm4", split="eval") == ([], {})
    # world_safety adds the safety split's demonstrations (refusals of harmful prompts, help otherwise)
    with_safety, report = load_from_args(SFTDataArgs(max_length=4096, truncation="drop", world_safety=True), tok, "glm4")
    safety_rows = sum(1 for _ in open(tmp_path / "world" / "tiny-seed0" / "safety" / "train.jsonl", encoding="utf-8"))
    assert len(with_safety) == len(train) + safety_rows
    assert report["files"][1] == str(tmp_path / "world" / "tiny-seed0" / "safety" / "train.jsonl")
    # a built world named by world_dir gives the same splits (the pipeline passes its own world)
    built = tmp_path / "world" / "tiny-seed0"
    from_dir, report = load_from_args(SFTDataArgs(max_length=4096, truncation="drop", world_safety=True,
                                                  world_dir=str(built)), tok, "glm4")
    assert len(from_dir) == len(with_safety) and report["files"][0] == str(built / "sft" / "train.jsonl")
    with pytest.raises(UserError, match=r"data.world_dir: .*nowhere/sft/train.jsonl does not exist.*world.build"):
        load_from_args(SFTDataArgs(world_dir=str(tmp_path / "nowhere")), tok, "glm4")


def test_old_template_without_markers_is_refused(tok):
    from align.sft_data import ChatRenderer

    class Old:
        chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"

    with pytest.raises(ValueError, match="no {% generation %} markers"):
        ChatRenderer(Old(), "glm4")


def test_data_args_load_as_a_config_section():
    from dataclasses import dataclass, field

    from common.config import ConfigError, load_config

    @dataclass
    class TrainerConfig:
        data: SFTDataArgs = field(default_factory=SFTDataArgs)

    cfg = load_config(TrainerConfig, ["data.packing=true", "data.loss_weighting=token", "data.train_files=[a.jsonl]",
                                      "data.truncation=truncate_left"])
    assert (cfg.data.packing, cfg.data.loss_weighting, cfg.data.train_files, cfg.data.truncation) == (
        True, "token", ["a.jsonl"], "truncate_left")
    assert (cfg.data.batching, cfg.data.bad_rows, cfg.data.packing_strategy) == ("sorted", "error", "ffd")
    with pytest.raises(ConfigError):
        load_config(TrainerConfig, ["data.truncation=right"])


def test_glm4_example_is_what_trl_tokenizes_plus_the_end_token(tok):
    """TRL's SFTTrainer(assistant_only_loss=True) tokenizes a conversation with trl.data_utils._tokenize;
    our GLM-4 example is that, plus the <|user|> that ends the last reply (which TRL cannot see)."""
    from trl.data_utils import _tokenize

    trl = _tokenize(tok, MULTI, return_assistant_tokens_mask=True)
    ex = render_messages(MULTI, tok, "glm4")
    user = special_token_ids(tok).user
    assert ex.input_ids == list(trl["input_ids"]) + [user]
    assert ex.labels == [t if m else X for t, m in zip(trl["input_ids"], trl["assistant_masks"])] + [user]
