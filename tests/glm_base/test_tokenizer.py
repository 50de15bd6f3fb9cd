"""Tokenizer: lossless round trips, special tokens, chat template, save/load, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from glm_base.tokenizer import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    bytes_per_token,
    main,
    read_corpus,
    special_token_ids,
    train_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]

ROUND_TRIP = {
    "english": "The quick brown fox jumps over the lazy dog. Isn't it? 12345678 apples, don't they'll!",
    "chinese": "今天天气很好，我们去公园散步吧。北京是中国的首都！你好吗？",
    "mixed": "青石镇 (Alder Bend) 有 3 座桥 and a lighthouse 灯塔。OK？",
    "emoji": "Good morning 🌅! 👩‍👩‍👧‍👦 family, flags 🇨🇳🇬🇧, skin tone 👍🏽, ✨ and 😀😀😀",
    "code": 'def f(x: int) -> dict[str, int]:\n    """Doc."""\n    return {"x": x ** 2, \'y\': x >> 1}  # 注释\n',
    "whitespace": "  leading\n\n\n\ttabs\t\tand   spaces   \r\n trailing   \n\n   ",
    "unicode": "naïve café Ωμέγα Привет مرحبا नमस्ते 日本語のテキスト 한국어 \u200b\u00a0nbsp",
    "lookalike specials": "[MASK] <sop> [gMASK]x<|user|>\n<|assistant|>[sMASK]<eop><|endoftext|>",
    "combining": "e\u0301 vs é, Å vs A\u030a",
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_round_trip(tokenizer, name):
    text = ROUND_TRIP[name]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_round_trip_training_text(tokenizer, sample_texts):
    for text in sample_texts.values():
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_encode_adds_nothing(tokenizer):
    ids = tokenizer.encode("hello")
    assert tokenizer.decode(ids) == "hello"
    assert ids == tokenizer.encode("hello", add_special_tokens=False)


def test_special_tokens_are_single_ids_in_order(tokenizer):
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = special_token_ids(tokenizer)
    assert len(set(ids.all)) == len(SPECIAL_TOKENS)
    assert ids.eos == tokenizer.eos_token_id and ids.pad == tokenizer.pad_token_id
    assert ids.mask == tokenizer.mask_token_id
    assert ids.masks == (ids.mask, ids.smask, ids.gmask)
    assert ids.chat_stop == (ids.eos, ids.user, ids.observation)
    for token in SPECIAL_TOKENS:
        assert tokenizer.encode(token) == [vocab[token]]


def test_special_tokens_never_split_or_merged(tokenizer):
    ids = special_token_ids(tokenizer)
    # glued to text and to each other, with no spaces around
    text = "abc[MASK]def[sMASK][gMASK]<sop>青石<eop><|system|>x<|user|>y<|assistant|>z<|observation|>w<|endoftext|><|pad|>"
    enc = tokenizer.encode(text)
    got = [i for i in enc if i in ids.all]
    assert got == [ids.mask, ids.smask, ids.gmask, ids.sop, ids.eop, ids.system, ids.user, ids.assistant,
                   ids.observation, ids.eos, ids.pad]
    # no ordinary token contains a special token's text
    for tok_str in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        if tok_str in SPECIAL_TOKENS:
            continue
        assert not any(s in tok_str for s in SPECIAL_TOKENS)
    assert tokenizer.decode(enc) == text
    assert tokenizer.decode(enc, skip_special_tokens=True) == "abcdef青石xyzw"


def test_chinese_is_compressed(tokenizer, sample_texts):
    # byte-level BPE learns merges inside runs of Chinese characters: fewer tokens than characters,
    # and a frequent word of the corpus is a single token
    zh = sample_texts["zh"]
    assert len(tokenizer.encode(zh)) < len(zh)
    assert len(tokenizer.encode("灯塔")) == 1


def test_bytes_per_token_on_the_fixture_text(tokenizer, sample_texts):
    """Byte-level BPE compresses both languages: a 1,200-token vocabulary measured 3.61 bytes/token
    on the EN fixture text and 5.12 on the ZH one (a Chinese character is 3 UTF-8 bytes, so ZH
    tokens hold ~1.7 characters). The README's figures come from held-out text (CLI's --eval)."""
    en = bytes_per_token(tokenizer, sample_texts["en"].splitlines())
    zh = bytes_per_token(tokenizer, sample_texts["zh"].splitlines())
    assert 3.3 < en < 4.0, en
    assert 4.7 < zh < 5.6, zh
    assert bytes_per_token(tokenizer, ["灯塔"]) == 6.0  # one token for a frequent two-character word


def test_train_errors():
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(["", ""], vocab_size=500)
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["abc"], vocab_size=100)


# --- chat template ------------------------------------------------------------------------------
def test_chat_template_basic(tokenizer):
    msgs = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi 你好"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "[gMASK]<sop><|system|>\nYou are helpful.<|user|>\nHi 你好<|assistant|>\nHello!<|user|>\nBye"
    )
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt == text + "<|assistant|>\n"


def test_chat_template_generation_prompt_is_prefix(tokenizer):
    msgs = [{"role": "user", "content": "Where is the lighthouse?"}, {"role": "assistant", "content": "North."}]
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    prompt = tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert full == prompt + "North."
    full_ids = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False)
    prompt_ids = tokenizer.apply_chat_template(msgs[:1], tokenize=True, add_generation_prompt=True, return_dict=False)
    if isinstance(full_ids, dict) or hasattr(full_ids, "keys"):  # transformers versions differ
        full_ids, prompt_ids = full_ids["input_ids"], prompt_ids["input_ids"]
    ids = special_token_ids(tokenizer)
    assert full_ids[:3] == [ids.gmask, ids.sop, ids.user]
    assert full_ids[: len(prompt_ids)] == prompt_ids


def test_chat_template_tools(tokenizer):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    msgs = [
        {"role": "user", "content": "北京天气？"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}],
        },
        {"role": "tool", "content": '{"sky": "晴"}'},
        {"role": "assistant", "content": "北京晴。"},
        {"role": "observation", "content": "extra"},
    ]
    text = tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
    schema = json.dumps(tools[0]["function"], ensure_ascii=False)
    assert text == (
        "[gMASK]<sop><|system|>\n# Available tools\n\n## get_weather\n"
        + schema
        + "\n\nTo call a tool, reply with its name on the first line and its arguments as JSON on the next."
        "<|user|>\n北京天气？"
        '<|assistant|>get_weather\n{"city": "北京"}'
        '<|observation|>\n{"sky": "晴"}'
        "<|assistant|>\n北京晴。"
        "<|observation|>\nextra"
        "<|assistant|>\n"
    )
    # arguments already serialised as a string are written verbatim; content + call gives two turns
    msgs2 = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
    ]
    assert tokenizer.apply_chat_template(msgs2, tokenize=False) == (
        '[gMASK]<sop><|user|>\nq<|assistant|>\nLet me check.<|assistant|>f\n{"a": 1}'
    )


def test_chat_template_unknown_role(tokenizer):
    with pytest.raises(Exception, match="unknown chat role"):
        tokenizer.apply_chat_template([{"role": "narrator", "content": "x"}], tokenize=False)


# The template as it was before the {% generation %} markers: the markers must not change a character.
_TEMPLATE_BEFORE_MARKERS = (
    "[gMASK]<sop>"
    "{% if tools %}"
    "<|system|>\n# Available tools"
    "{% for tool in tools %}"
    "{% set fn = tool.function if tool.function is defined else tool %}"
    "{{ '\\n\\n## ' ~ fn.name ~ '\\n' }}{{ fn | tojson }}"
    "{% endfor %}"
    "{{ '\\n\\n' }}To call a tool, reply with its name on the first line and its arguments as JSON on the next."
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' %}"
    "<|system|>\n{{ message.content }}"
    "{% elif message.role == 'user' %}"
    "<|user|>\n{{ message.content }}"
    "{% elif message.role == 'assistant' %}"
    "{% if message.content or not message.tool_calls %}"
    "<|assistant|>\n{{ message.content if message.content else '' }}"
    "{% endif %}"
    "{% if message.tool_calls %}"
    "{% for call in message.tool_calls %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "<|assistant|>{{ fn.name }}\n"
    "{% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{% elif message.role == 'observation' or message.role == 'tool' %}"
    "<|observation|>\n{{ message.content }}"
    "{% else %}"
    "{{ raise_exception('unknown chat role: ' ~ message.role) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}
_CALL2 = {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    "system multi-turn": [
        {"role": "system", "content": "Be brief.\n"},
        {"role": "user", "content": "Hi 你好"},
        {"role": "assistant", "content": "Hello!\n\n"},
        {"role": "user", "content": "\nBye"},
        {"role": "assistant", "content": " Ciao."},
    ],
    "ends with user": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}],
    "tool call only": [{"role": "user", "content": "北京天气？"},
                       {"role": "assistant", "content": "", "tool_calls": [_CALL]},
                       {"role": "tool", "content": '{"sky": "晴"}'},
                       {"role": "assistant", "content": "北京晴。"}],
    "content and two calls": [{"role": "user", "content": "q"},
                              {"role": "assistant", "content": "Let me check.", "tool_calls": [_CALL, _CALL2]},
                              {"role": "observation", "content": "x"},
                              {"role": "assistant", "content": "Done."}],
    "two calls, no content": [{"role": "user", "content": "q"},
                              {"role": "assistant", "tool_calls": [_CALL, _CALL2]}],
    "system after reply": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "system", "content": "s"}, {"role": "user", "content": "c"}],
    "empty reply": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}],
}


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_chat_template_markers_change_no_text(tokenizer, name):
    msgs = CONVERSATIONS[name]
    for tools in (None, _TOOLS):
        for gen in (False, True):
            kwargs = dict(tokenize=False, tools=tools, add_generation_prompt=gen)
            before = tokenizer.apply_chat_template(msgs, chat_template=_TEMPLATE_BEFORE_MARKERS, **kwargs)
            assert tokenizer.apply_chat_template(msgs, **kwargs) == before


def _masked(tokenizer, msgs, **kwargs) -> list[tuple[str, int]]:
    out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        **kwargs)
    assert len(out["assistant_masks"]) == len(out["input_ids"])
    return out["input_ids"], out["assistant_masks"]


def _marked_text(tokenizer, msgs, **kwargs) -> str:
    """The rendered conversation with the assistant-masked tokens wrapped in « »."""
    import itertools

    ids, mask = _masked(tokenizer, list(msgs), **kwargs)
    pieces = []
    for marked, run in itertools.groupby(zip(ids, mask), key=lambda pair: bool(pair[1])):
        text = tokenizer.decode([token for token, _ in run])
        pieces.append(f"«{text}»" if marked else text)
    return "".join(pieces)


def test_chat_template_assistant_mask(tokenizer):
    """The assistant's part: each reply after its header plus the <|user|>/<|observation|> that ends it."""
    marked = {name: _marked_text(tokenizer, msgs) for name, msgs in CONVERSATIONS.items()}
    assert marked["system multi-turn"] == (
        "[gMASK]<sop><|system|>\nBe brief.\n<|user|>\nHi 你好<|assistant|>\n«Hello!\n\n<|user|>»\n\nBye"
        "<|assistant|>\n« Ciao.»"
    )
    assert marked["ends with user"] == "[gMASK]<sop><|user|>\na<|assistant|>\n«b<|user|>»\nc"
    assert marked["tool call only"] == (
        '[gMASK]<sop><|user|>\n北京天气？<|assistant|>«get_weather\n{"city": "北京"}<|observation|>»\n{"sky": "晴"}'
        "<|assistant|>\n«北京晴。»"
    )
    assert marked["content and two calls"] == (
        '[gMASK]<sop><|user|>\nq<|assistant|>\n«Let me check.<|assistant|>get_weather\n{"city": "北京"}'
        '<|assistant|>f\n{"a": 1}<|observation|>»\nx<|assistant|>\n«Done.»'
    )
    assert marked["two calls, no content"] == (
        '[gMASK]<sop><|user|>\nq<|assistant|>«get_weather\n{"city": "北京"}<|assistant|>f\n{"a": 1}»'
    )
    # a system turn does not end a reply (it is not a stop token): nothing after "b" is marked
    assert marked["system after reply"] == "[gMASK]<sop><|user|>\na<|assistant|>\n«b»<|system|>\ns<|user|>\nc"
    assert marked["empty reply"] == "[gMASK]<sop><|user|>\na<|assistant|>\n"
    # the generation prompt and a tools system turn are never marked
    ids, mask = _masked(tokenizer, CONVERSATIONS["ends with user"], tools=_TOOLS, add_generation_prompt=True)
    text = tokenizer.decode(ids)
    assert text.endswith("<|assistant|>\n") and "# Available tools" in text
    assert [tokenizer.decode([i]) for i, m in zip(ids, mask) if m] == ["b", "<|user|>"]
    # every marked special token is a reply-ending token or an inner tool-call header
    ids, mask = _masked(tokenizer, CONVERSATIONS["content and two calls"])
    special = special_token_ids(tokenizer)
    assert {i for i, m in zip(ids, mask) if m and i in special.all} == {special.assistant, special.observation}


def test_chat_template_passes_trl_checks(tokenizer):
    """TRL's SFTTrainer(assistant_only_loss=True) calls these: no patching needed (it refused before),
    prefix preserving with tools, and the reply's end-of-turn token is in the loss mask."""
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
        is_chat_template_prefix_preserving,
        is_chat_template_stop_token_trained,
    )

    assert has_generation_markers(tokenizer.chat_template)
    assert get_training_chat_template(tokenizer) is None
    assert is_chat_template_prefix_preserving(tokenizer)
    assert is_chat_template_stop_token_trained(tokenizer)
    old = tokenizer.chat_template
    try:
        tokenizer.chat_template = _TEMPLATE_BEFORE_MARKERS
        with pytest.raises(ValueError, match="not training-compatible"):
            get_training_chat_template(tokenizer)
    finally:
        tokenizer.chat_template = old


# --- save / load / CLI --------------------------------------------------------------------------
def test_load_without_glm_base_then_cli(tmp_path, tokenizer_dir, tokenizer, sample_texts):
    """In one fresh interpreter (to keep the suite fast): the saved directory loads with plain
    transformers before glm_base is ever imported, then ``python -m glm_base.tokenizer`` trains."""
    corpus = tmp_path / "c.txt"
    corpus.write_text((sample_texts["en"] + "\n" + sample_texts["zh"]) * 2, encoding="utf-8")
    out_dir = tmp_path / "cli_tok"
    code = (
        "import sys, json, runpy\n"
        "from transformers import AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(tokenizer_dir)!r})\n"
        "assert 'glm_base' not in sys.modules\n"
        "text = '青石镇 [gMASK]<sop> hi  \\n'\n"
        "out = {'ids': tok.encode(text), 'dec': tok.decode(tok.encode(text)), 'eos': tok.eos_token,\n"
        "       'pad': tok.pad_token_id, 'mask': tok.mask_token,\n"
        "       'chat': tok.apply_chat_template([{'role': 'user', 'content': 'x'}], tokenize=False,\n"
        "                                       add_generation_prompt=True)}\n"
        "print(json.dumps(out))\n"
        f"sys.argv = ['glm_base.tokenizer', '--corpus', {str(corpus)!r}, '--vocab-size', '600', '--out', {str(out_dir)!r}]\n"
        "runpy.run_module('glm_base.tokenizer', run_name='__main__')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[0])
    text = "青石镇 [gMASK]<sop> hi  \n"
    assert out["ids"] == tokenizer.encode(text)
    assert out["dec"] == text
    assert out["eos"] == "<|endoftext|>" and out["mask"] == "[MASK]"
    assert out["pad"] == special_token_ids(tokenizer).pad
    assert out["chat"] == "[gMASK]<sop><|user|>\nx<|assistant|>\n"
    assert "saved tokenizer" in res.stdout
    assert (out_dir / "tokenizer.json").is_file() and (out_dir / "tokenizer_config.json").is_file()


def test_loaded_equals_trained(tokenizer_dir, tokenizer):
    loaded = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.chat_template == CHAT_TEMPLATE
    for text in ROUND_TRIP.values():
        assert loaded.encode(text) == tokenizer.encode(text)
        assert loaded.decode(loaded.encode(text)) == text
    assert special_token_ids(loaded) == special_token_ids(tokenizer)


def test_cli_text_and_jsonl(tmp_path, sample_texts, capsys):
    txt = tmp_path / "en.txt"
    txt.write_text(sample_texts["en"] * 3, encoding="utf-8")
    jsonl = tmp_path / "zh.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for line in (sample_texts["zh"] * 3).splitlines():
            fh.write(json.dumps({"body": line, "id": 1}, ensure_ascii=False) + "\n")
    out = tmp_path / "tok"
    rc = main(["--corpus", str(txt), str(jsonl), "--vocab-size", "700", "--out", str(out),
               "--text-field", "body", "--eval", str(txt)])
    assert rc == 0
    assert "bytes/token" in capsys.readouterr().out
    tok = AutoTokenizer.from_pretrained(str(out))
    assert 300 < len(tok) <= 700
    assert tok.decode(tok.encode(sample_texts["mixed"])) == sample_texts["mixed"]
    # a missing field names the file, line and field
    rc = main(["--corpus", str(jsonl), "--vocab-size", "700", "--out", str(tmp_path / "t2")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{jsonl}:1" in err and "'text'" in err


def test_read_corpus_plain_paragraphs(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    assert list(read_corpus([p])) == ["one\ntwo\n\n", "three\n"]
    with pytest.raises(FileNotFoundError):
        list(read_corpus([tmp_path / "missing.txt"]))


def test_no_token_straddles_a_sentence_end(tokenizer):
    """Punctuation never starts a word piece, so no token holds a sentence end followed by a letter
    (the collator's sentence objective cuts after tokens containing . ! ? 。 ！ ？)."""
    import re

    straddle = re.compile(r"[.!?。！？]\w")
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    assert not [t for t in texts if straddle.search(t)]
    ids = tokenizer.encode("生于1993年。塔卡最喜欢紫色！Then. Next")
    pieces = [tokenizer.decode([i]) for i in ids]
    assert not any(straddle.search(p) for p in pieces)
