"""Infill generation: a model trained by blank infilling on a few facts fills them back in."""

import pytest
import torch

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.generation import infill, infill_ids, infill_with_spans, span_log_likelihoods
from glm_base.infill import main as infill_main
from glm_base.infilling import BlankInfillingCollator, build_row
from glm_base.tokenizer import special_token_ids, train_tokenizer

FACTS = [
    "Velda is the capital of Lorin. Velda lies on the river Mott.",
    "Pelpo Industries makes teapots. Pelpo Industries was founded in 1881.",
    "Kelha Nelnel works as a chemist. Kelha Nelnel keeps a cat.",
    "维达是洛林的首都。维达位于莫特河畔。",
]


def answer_span(tokenizer, text, answer):
    """Token indices [start, end) covering ``answer`` (with its leading space) in ``text``."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    begin = text.index(answer)
    covered = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < begin + len(answer) and b > begin]
    assert enc["offset_mapping"][covered[0]][0] == begin, "answer must start on a token boundary"
    return covered[0], covered[-1] + 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GLM-4-variant model that memorised FACTS in the training layout of blank infilling.

    The rows are built with the collator's own ``build_row`` around known answer spans, so if
    ``infill`` laid out its input differently from training (positions, masks, Part A), the model
    could not reproduce the answers.
    """
    tokenizer = train_tokenizer(FACTS * 20, vocab_size=300)
    ids = special_token_ids(tokenizer)
    collator = BlankInfillingCollator(tokenizer, max_length=96)

    def tokens(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"] + [ids.eos]

    rows = [
        build_row(tokens(FACTS[0]), [answer_span(tokenizer, FACTS[0], " Lorin")], ids.mask, ids.sop, ids.eop),
        build_row(tokens(FACTS[1]), [answer_span(tokenizer, FACTS[1], " teapots"),
                                     answer_span(tokenizer, FACTS[1], " 1881")], ids.mask, ids.sop, ids.eop,
                  order=[1, 0]),
        build_row(tokens(FACTS[3]), [answer_span(tokenizer, FACTS[3], "洛林")], ids.mask, ids.sop, ids.eop),
        build_row(tokens(FACTS[2]), [(answer_span(tokenizer, FACTS[2], " Kelha Nelnel keeps")[0], len(tokens(FACTS[2])))],
                  ids.gmask, ids.sop, ids.eop, suffix=True),
    ]
    batch = collator.pad(rows)
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=128, pad_token_id=ids.pad)
    model = GLMForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05
    model.eval()
    path = tmp_path_factory.mktemp("infill-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer, path


def test_infill_recovers_memorised_facts(trained):
    model, tokenizer, _ = trained
    assert infill(model, tokenizer, "Velda is the capital of [MASK]. Velda lies on the river Mott.") == FACTS[0]
    assert infill(model, tokenizer, "Pelpo Industries makes [MASK]. Pelpo Industries was founded in [MASK].") == FACTS[1]
    assert infill(model, tokenizer, "维达是[MASK]的首都。维达位于莫特河畔。") == FACTS[3]


def test_span_log_likelihoods_rank_the_memorised_answer_first(trained):
    model, tokenizer, _ = trained
    text = "Velda is the capital of [MASK]. Velda lies on the river Mott."
    scores = span_log_likelihoods(model, tokenizer, text, ["Lorin", "Mott", "Velda", "Pelpo"])
    assert max(range(4), key=scores.__getitem__) == 0
    assert scores[0] > -0.5 and all(s < scores[0] - 2 for s in scores[1:])
    zh = span_log_likelihoods(model, tokenizer, "维达是[MASK]的首都。维达位于莫特河畔。", ["莫特", "洛林"])
    assert zh[1] > zh[0]


def test_span_log_likelihood_is_the_training_loss_of_that_span(trained):
    """The score is minus the summed token loss of a training row masking that span."""
    model, tokenizer, _ = trained
    ids = special_token_ids(tokenizer)
    text = FACTS[0]
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"] + [ids.eos]
    row = build_row(tokens, [answer_span(tokenizer, text, " Lorin")], ids.mask, ids.sop, ids.eop)
    batch = BlankInfillingCollator(tokenizer, max_length=96).pad([row])
    with torch.no_grad():
        n_targets = int((batch["shift_labels"] != -100).sum())
        summed = -model(**batch).loss.item() * n_targets
    [score] = span_log_likelihoods(model, tokenizer, "Velda is the capital of [MASK]. Velda lies on the river Mott.", ["Lorin"])
    assert score == pytest.approx(summed, abs=1e-4)
    with pytest.raises(ValueError, match="exactly one"):
        span_log_likelihoods(model, tokenizer, "[MASK] is the capital of [MASK].", ["x"])


def test_gmask_continues_the_document(trained):
    model, tokenizer, _ = trained
    result = infill_with_spans(model, tokenizer, "Kelha Nelnel works as a chemist.[gMASK]")
    assert result.text == FACTS[2]
    assert result.spans == [" Kelha Nelnel keeps a cat."]


def test_every_mask_is_replaced_and_the_rest_kept(trained):
    model, tokenizer, _ = trained
    completed, fills = infill_ids(model, tokenizer, "Alpha [MASK] beta [sMASK] gamma", max_new_tokens=3)
    ids = special_token_ids(tokenizer)
    assert len(fills) == 2 and all(len(f) <= 3 for f in fills)
    assert not set(completed) & set(ids.masks)
    text = tokenizer.decode(completed)
    assert text.startswith("Alpha") and text.endswith(" gamma")


def test_text_without_a_mask_is_an_error(trained):
    model, tokenizer, _ = trained
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        infill(model, tokenizer, "nothing to fill")


def test_cli_prints_the_filled_text(trained, capsys):
    _, _, path = trained
    infill_main(["--checkpoint", str(path), "--spans", "Velda is the capital of [MASK]. Velda lies on the river Mott."])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == FACTS[0]
    assert out[1] == "  span 0: ' Lorin'"
