"""Byte-level BPE tokenizer with GLM's special tokens and a GLM-4 style chat template.

Train one from files (plain text, or JSONL with a text field)::

    python -m glm_base.tokenizer --corpus data/world/train.jsonl --vocab-size 8000 --out runs/tok

or from Python with :func:`train_tokenizer`. The result is a plain
``transformers.PreTrainedTokenizerFast`` directory: ``AutoTokenizer.from_pretrained(DIR)`` loads it
without importing glm_base.

Design:
- No normalizer, and a byte-level pre-tokenizer/decoder, so ``decode(encode(x)) == x`` for any
  string (English, Chinese, emoji, code, runs of spaces, tabs and newlines). Decoding never "cleans
  up" spaces (``clean_up_tokenization_spaces=False``).
- The pre-tokenizer splits text with a GPT-4/GLM-4 style regex before the bytes are mapped: words
  with their leading space, digits in groups of at most three, punctuation runs, newline runs. A run
  of Chinese characters is one "word" (they are letters to the regex), so BPE learns merges inside it.
- The special tokens get the first ids (0..10, in the order of :data:`SPECIAL_TOKENS`), are single ids
  and are never split or merged with their neighbours. ``encode`` adds nothing around the text: the
  pretraining data helper appends ``<|endoftext|>`` and the chat template writes ``[gMASK]<sop>``.

Chat format (GLM-4 style), set as the tokenizer's ``chat_template``::

    [gMASK]<sop><|system|>\\n{system}<|user|>\\n{user}<|assistant|>\\n{reply}<|observation|>\\n{tool}...

- A tool call (an assistant message with ``tool_calls``, in the transformers format) is written as
  ``<|assistant|>{name}\\n{arguments as JSON}`` (GLM-4 puts the function name where a plain reply has
  an empty metadata line); a tool result (role ``tool`` or ``observation``) as
  ``<|observation|>\\n{content}``. ``tools=[...]`` passed to ``apply_chat_template`` become one leading
  ``<|system|>`` turn listing each tool's JSON schema.
- ``add_generation_prompt=True`` appends ``<|assistant|>\\n``, so a prompt rendered with it is an exact
  prefix of the conversation rendered with the reply.
- Nothing is written after the last turn: as in GLM-4, a reply ends where the next ``<|user|>`` or
  ``<|observation|>`` (or ``<|endoftext|>``) begins; :attr:`SpecialTokenIds.chat_stop` lists those ids
  for generation and for the SFT stage, which appends ``<|user|>`` after the last reply it trains on
  (as GLM-4's own fine-tuning code does).
- ``{% generation %}`` markers (they write no text) give the assistant mask of
  ``apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)`` and make the
  template pass TRL's checks for ``assistant_only_loss``: the assistant's part is each assistant
  message after its ``<|assistant|>\\n`` header (after ``<|assistant|>`` alone for a tool call, whose
  name fills the header line) plus the ``<|user|>``/``<|observation|>`` token right after it, which
  ends the reply. System, user and observation text, and the role headers, are never marked.

Failure modes: :func:`train_tokenizer` raises ``ValueError`` when the corpus is empty or the vocab
size leaves no room beyond the 256 bytes and the special tokens; :func:`read_corpus` raises with the
file, line and field when a JSONL line has no such text field; :func:`special_token_ids` raises
``KeyError`` naming a special token the tokenizer lacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# --- special tokens -----------------------------------------------------------------------------
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
MASK_TOKEN = "[MASK]"
SMASK_TOKEN = "[sMASK]"
GMASK_TOKEN = "[gMASK]"
SOP_TOKEN = "<sop>"
EOP_TOKEN = "<eop>"
SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
OBSERVATION_TOKEN = "<|observation|>"

#: All special tokens, in id order (a freshly trained tokenizer gives them ids 0..10).
SPECIAL_TOKENS: tuple[str, ...] = (
    EOS_TOKEN,
    PAD_TOKEN,
    MASK_TOKEN,
    SMASK_TOKEN,
    GMASK_TOKEN,
    SOP_TOKEN,
    EOP_TOKEN,
    SYSTEM_TOKEN,
    USER_TOKEN,
    ASSISTANT_TOKEN,
    OBSERVATION_TOKEN,
)

# GPT-4 / GLM-4 style split: contractions, words with an optional leading space or symbol, digits
# in groups of <= 3, punctuation runs (with trailing newlines), newline runs, other whitespace.
# Every character of the input lands in exactly one piece, so the split is lossless.
# Unlike GPT-4's pattern, a word never takes a leading *punctuation* mark: in Chinese, which has no
# spaces, "。塔" would otherwise become one token that straddles a sentence boundary (and the
# collator's sentence objective cuts sentences after tokens that contain 。！？.!?).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}\p{P}]?\p{L}+"
    r"|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


def _build_chat_template() -> str:
    """The Jinja chat template (see the module docstring for the format it writes).

    ``{% generation %}`` blocks mark what the assistant writes, for
    ``apply_chat_template(..., return_assistant_tokens_mask=True)`` and TRL's ``assistant_only_loss``:
    each assistant message after its first ``<|assistant|>`` header (and after the ``\\n`` that
    follows it for a plain reply, which is part of the generation prompt), and the ``<|user|>`` or
    ``<|observation|>`` token that opens the turn right after an assistant turn: in GLM-4's format
    that token ends the reply (see :attr:`SpecialTokenIds.chat_stop`). The markers write no text.
    """
    return (
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
        "{% set after_reply = not loop.first and loop.previtem.role == 'assistant' %}"
        "{% if message.role == 'system' %}"
        "<|system|>\n{{ message.content }}"
        "{% elif message.role == 'user' %}"
        "{% if after_reply %}{% generation %}<|user|>{% endgeneration %}{% else %}<|user|>{% endif %}"
        "{{ '\\n' }}{{ message.content }}"
        "{% elif message.role == 'assistant' %}"
        "{% set plain = message.content or not message.tool_calls %}"
        "<|assistant|>{{ '\\n' if plain else '' }}"
        "{% generation %}"
        "{% if plain %}{{ message.content if message.content else '' }}{% endif %}"
        "{% if message.tool_calls %}"
        "{% for call in message.tool_calls %}"
        "{% set fn = call.function if call.function is defined else call %}"
        "{% if plain or not loop.first %}<|assistant|>{% endif %}{{ fn.name }}\n"
        "{% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif %}"
        "{% endfor %}"
        "{% endif %}"
        "{% endgeneration %}"
        "{% elif message.role == 'observation' or message.role == 'tool' %}"
        "{% if after_reply %}{% generation %}<|observation|>{% endgeneration %}{% else %}<|observation|>{% endif %}"
        "{{ '\\n' }}{{ message.content }}"
        "{% else %}"
        "{{ raise_exception('unknown chat role: ' ~ message.role) }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )


CHAT_TEMPLATE: str = _build_chat_template()


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of GLM's special tokens in one tokenizer (see :func:`special_token_ids`)."""

    eos: int
    pad: int
    mask: int
    smask: int
    gmask: int
    sop: int
    eop: int
    system: int
    user: int
    assistant: int
    observation: int

    @property
    def masks(self) -> tuple[int, int, int]:
        """The three mask tokens: ``[MASK]``, ``[sMASK]``, ``[gMASK]``."""
        return (self.mask, self.smask, self.gmask)

    @property
    def chat_stop(self) -> tuple[int, int, int]:
        """Tokens that end an assistant reply (GLM-4's eos list): eos, ``<|user|>``, ``<|observation|>``."""
        return (self.eos, self.user, self.observation)

    @property
    def all(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


_FIELD_FOR_TOKEN = {
    EOS_TOKEN: "eos",
    PAD_TOKEN: "pad",
    MASK_TOKEN: "mask",
    SMASK_TOKEN: "smask",
    GMASK_TOKEN: "gmask",
    SOP_TOKEN: "sop",
    EOP_TOKEN: "eop",
    SYSTEM_TOKEN: "system",
    USER_TOKEN: "user",
    ASSISTANT_TOKEN: "assistant",
    OBSERVATION_TOKEN: "observation",
}


def special_token_ids(tokenizer) -> SpecialTokenIds:
    """The ids of every GLM special token in ``tokenizer`` (a transformers or tokenizers tokenizer).

    Raises ``KeyError`` naming the first special token the tokenizer does not know.
    """
    vocab = tokenizer.get_vocab()
    ids = {}
    for token, name in _FIELD_FOR_TOKEN.items():
        if token not in vocab:
            raise KeyError(f"tokenizer has no special token {token!r} (expected all of {list(SPECIAL_TOKENS)})")
        ids[name] = vocab[token]
    return SpecialTokenIds(**ids)


# --- training -----------------------------------------------------------------------------------
def _raw_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained ``tokenizers.Tokenizer`` as a ``PreTrainedTokenizerFast`` with GLM's specials."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        mask_token=MASK_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN, MASK_TOKEN)],
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=1_000_000_000,
    )


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path | None = None,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and return it (saved to ``out_dir`` if given).

    ``vocab_size`` counts the 11 special tokens and the 256 byte tokens; BPE may stop below it when
    the corpus has no more pairs seen ``min_frequency`` times. Raises ``ValueError`` if the corpus is
    empty or ``vocab_size`` is too small.
    """
    floor = len(SPECIAL_TOKENS) + 256
    if vocab_size < floor:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least {floor} (256 bytes + specials)")
    seen = {"n": 0}

    def counted() -> Iterator[str]:
        for text in texts:
            if text:
                seen["n"] += 1
                yield text

    tok = _raw_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(counted(), trainer=trainer)
    if seen["n"] == 0:
        raise ValueError("cannot train a tokenizer on an empty corpus (no non-empty text was given)")
    hf_tok = wrap_tokenizer(tok)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        hf_tok.save_pretrained(str(out_dir))
        logger.info("saved tokenizer (vocab %d) to %s", len(hf_tok), out_dir)
    return hf_tok


def read_corpus(paths: Sequence[str | Path], text_field: str = "text") -> Iterator[str]:
    """Yield texts from files: ``.jsonl``/``.json`` lines are JSON objects with ``text_field``;
    any other file is plain text, yielded one paragraph (blank-line separated block) at a time.

    A JSONL file is recognised by its suffix or by its first non-blank line being a JSON object.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file, line and field
    for a JSONL line that is not an object or lacks ``text_field`` (or whose value is not a string).
    """
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
        if _looks_like_jsonl(path):
            with path.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from None
                    if not isinstance(row, dict) or text_field not in row:
                        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                        raise ValueError(
                            f"{path}:{lineno}: no text field {text_field!r} (found {keys}); "
                            f"pass --text-field to name the field that holds the text"
                        )
                    value = row[text_field]
                    if not isinstance(value, str):
                        raise ValueError(
                            f"{path}:{lineno}: field {text_field!r} is {type(value).__name__}, expected a string"
                        )
                    yield value
        else:
            block: list[str] = []
            with path.open(encoding="utf-8", newline="") as fh:
                for line in fh:
                    block.append(line)
                    if not line.strip():
                        yield "".join(block)
                        block = []
            if block:
                yield "".join(block)


def _looks_like_jsonl(path: Path) -> bool:
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return True
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def bytes_per_token(tokenizer, texts: Iterable[str]) -> float:
    """UTF-8 bytes per token over ``texts`` (higher means a more compact tokenizer)."""
    n_bytes = n_tokens = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.encode(text, add_special_tokens=False))
    if n_tokens == 0:
        raise ValueError("no tokens: the evaluation texts are empty")
    return n_bytes / n_tokens


# --- CLI ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glm_base.tokenizer",
        description="Train a byte-level BPE tokenizer with GLM special tokens and save it as a "
        "transformers PreTrainedTokenizerFast directory.",
    )
    parser.add_argument("--corpus", nargs="+", required=True, help="plain-text or JSONL files")
    parser.add_argument("--vocab-size", type=int, required=True, help="vocabulary size incl. specials")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text)")
    parser.add_argument("--min-frequency", type=int, default=2, help="minimum pair count for a merge")
    parser.add_argument(
        "--eval", nargs="*", default=[], metavar="FILE", help="files to report bytes/token on after training"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        tok = train_tokenizer(
            read_corpus(args.corpus, args.text_field),
            args.vocab_size,
            out_dir=args.out,
            min_frequency=args.min_frequency,
            show_progress=sys.stderr.isatty(),
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved tokenizer with {len(tok)} tokens to {args.out}")
    for path in args.eval:
        bpt = bytes_per_token(tok, read_corpus([path], args.text_field))
        print(f"{path}: {bpt:.3f} bytes/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
