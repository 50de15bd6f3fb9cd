"""Packing and LongAlign loss weighting: exact layouts on hand-made examples; packed equals unpacked
(logits of every example, weighted loss = mean of per-example mean losses) on tiny random models."""

from __future__ import annotations

import pytest
import torch
from sft_helpers import small_tokenizer, tiny_model

from align.packing import (
    collate,
    make_rows,
    model_inputs,
    pack_examples,
    sft_loss,
    token_weights,
)
from align.sft_data import SFTExample, render_messages

X = -100
CONVERSATIONS = [
    [{"role": "user", "content": "Where is the lighthouse?"},
     {"role": "assistant", "content": "It stands on the northern cliff of Alder Bend."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好！"},
     {"role": "assistant", "content": "你好。"}, {"role": "user", "content": "灯塔在哪里？"},
     {"role": "assistant", "content": "灯塔在北边的悬崖上。"}],
    [{"role": "user", "content": "When does the ferry run?"},
     {"role": "assistant", "content": "Twice on Sundays, and the keeper lights the lamp at dusk."}],
]


# --- packing ----------------------------------------------------------------------------------
def test_pack_first_fit_decreasing_and_greedy():
    lengths = [5, 9, 3, 6, 2, 7]
    # longest first, each into the first row with room: 9 -> new row 0 (room 1); 7 -> new row 1 (room 3);
    # 6 -> new row 2 (room 4); 5 -> new row 3; 3 -> row 1 (room 3 -> 0); 2 -> row 2 (room 4 -> 2)
    assert pack_examples(lengths, 10) == [[1], [5, 2], [3, 4], [0]]
    # max 9: rows 0-3 have room 0, 2, 3, 4; 3 -> row 2; 2 -> row 1
    assert pack_examples(lengths, 10, "greedy") == [[0], [1], [2, 3], [4, 5]]
    assert pack_examples(lengths, 9) == [[1], [5, 4], [3, 2], [0]]
    with pytest.raises(ValueError, match="example 1 has 9 tokens"):
        pack_examples(lengths, 8)
    for rows in (pack_examples(lengths, 12), pack_examples(lengths, 12, "greedy")):
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= 12 for row in rows)


def test_make_rows():
    examples = [SFTExample(input_ids=[7] * n, shift_labels=[7] * n, position_ids=list(range(n))) for n in (5, 9, 3)]
    assert make_rows(examples) == [[examples[0]], [examples[1]], [examples[2]]]
    packed = make_rows(examples, 10)
    assert [[len(ex) for ex in row] for row in packed] == [[9], [5, 3]]
    assert [[len(ex) for ex in row] for row in make_rows(examples, 10, "greedy")] == [[5], [9], [3]]


def _ex4(ids, labels):
    return SFTExample(input_ids=ids, shift_labels=labels, position_ids=list(range(len(ids))))


def _ex1(a_ids, b_ids, labels, gmask_at):
    a, b = len(a_ids), len(b_ids)
    return SFTExample(input_ids=a_ids + b_ids, shift_labels=labels,
                      position_ids=[list(range(a)) + [gmask_at] * b, [0] * a + list(range(1, b + 1))],
                      part_a_length=a)


def test_collate_glm4_packed_exact():
    e1 = _ex4([10, 11, 12, 13], [X, 12, 13, X])
    e2 = _ex4([20, 21, 22], [21, X, X])
    e3 = _ex4([30, 31], [31, X])
    batch = collate([[e1, e2], [e3]], pad_id=1, loss_weighting="example")
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 20, 21, 22], [30, 31, 1, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 0, 0, 0, 0]]
    assert batch["sequence_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 7, [1, 1, 0, 0, 0, 0, 0]]
    assert batch["shift_labels"].tolist() == [[X, 12, 13, X, 21, X, X], [31, X, X, X, X, X, X]]
    assert batch["loss_weights"].tolist() == [[0, .5, .5, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]]
    assert batch["num_examples"].tolist() == [2, 1] and batch["num_target_tokens"].tolist() == [3, 1]
    assert batch["num_loss_items"].tolist() == [2, 1]
    assert "part_a_length" not in batch
    tokens = collate([[e1, e2], [e3]], pad_id=1, loss_weighting="token")
    assert tokens["loss_weights"].tolist() == [[0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]]
    assert tokens["num_loss_items"].tolist() == [3, 1]
    unpacked = collate([[e1], [e2]], pad_id=1)
    assert "sequence_ids" not in unpacked and unpacked["position_ids"].shape == (2, 4)


def test_collate_glm1_packed_puts_part_a_first():
    # example 1: Part A [10 11 g], Part B [s 12 13]; example 2: Part A [20 g], Part B [s 21]
    e1 = _ex1([10, 11, 4], [5, 12, 13], [X, X, X, 12, 13, 6], gmask_at=2)
    e2 = _ex1([20, 4], [5, 21], [X, X, 21, 6], gmask_at=1)
    batch = collate([[e1, e2]], pad_id=1)
    assert batch["input_ids"].tolist() == [[10, 11, 4, 20, 4, 5, 12, 13, 5, 21]]
    assert batch["part_a_length"].tolist() == [5]
    assert batch["sequence_ids"].tolist() == [[1, 1, 1, 2, 2, 1, 1, 1, 2, 2]]
    assert batch["position_ids"].tolist() == [[[0, 1, 2, 0, 1, 2, 2, 2, 1, 1], [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]]]
    assert batch["shift_labels"].tolist() == [[X, X, X, X, X, 12, 13, 6, 21, 6]]
    assert torch.equal(batch["loss_weights"], torch.tensor([[0, 0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3, .5, .5]]))


def test_collate_refuses_mixed_architectures_and_untrained_examples():
    e4 = _ex4([10, 11], [11, X])
    e1 = _ex1([10, 4], [5, 12], [X, X, 12, 6], gmask_at=1)
    with pytest.raises(ValueError, match="mixes architectures"):
        collate([[e4], [e1]], pad_id=1)
    with pytest.raises(ValueError, match="no target token"):
        token_weights(_ex4([10, 11], [X, X]))


# --- packed equals unpacked -------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["glm4", "glm1"])
def test_packed_equals_unpacked(arch):
    tok = small_tokenizer()
    model = tiny_model(arch, len(tok))
    examples = [render_messages(c, tok, arch) for c in CONVERSATIONS]
    lengths = [len(ex) for ex in examples]
    max_length = sum(lengths[:3]) + 2
    packs = pack_examples(lengths, max_length)
    assert max(len(p) for p in packs) >= 2  # the test packs for real
    rows = [[examples[i] for i in p] for p in packs]
    packed = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        packed_logits = model(**model_inputs(packed)).logits
        packed_loss, metrics = sft_loss(model, packed)
        singles, accuracies = [], []
        for r, row in enumerate(rows):
            for k, ex in enumerate(row):
                alone = collate([[ex]], tok.pad_token_id)
                out = model(**model_inputs(alone), shift_labels=alone["shift_labels"])
                mine = packed_logits[r][packed["sequence_ids"][r] == k + 1]
                assert mine.shape == out.logits[0].shape
                assert torch.allclose(mine, out.logits[0], atol=1e-5, rtol=0), (arch, r, k)
                singles.append(out.loss)  # the model's own per-example token mean
                assert torch.allclose(sft_loss(model, alone)[0], out.loss, atol=1e-6)
                accuracies.append((out.logits[0].argmax(-1) == alone["shift_labels"][0]).float().sum()
                                  / ex.num_targets)
    assert int(packed["num_examples"].sum()) == len(examples)
    assert abs(float(metrics["accuracy"]) - float(torch.stack(accuracies).mean())) <= 1e-6
    # LongAlign: the packed batch's loss is the mean of per-example mean losses
    assert abs(float(packed_loss) - float(torch.stack(singles).mean())) <= 1e-5
    # token weighting: the mean over all target tokens (long examples weigh more)
    tokens = collate(rows, tok.pad_token_id, loss_weighting="token")
    with torch.no_grad():
        token_loss, _ = sft_loss(model, tokens)
    n = torch.tensor([float(ex.num_targets) for row in rows for ex in row])
    assert abs(float(token_loss) - float((torch.stack(singles) * n).sum() / n.sum())) <= 1e-5
    assert abs(float(token_loss) - float(packed_loss)) > 1e-3  # the two weightings do differ here


def test_weighted_loss_exact_under_accumulation_and_processes():
    """A global batch split over 2 processes x up to 2 micro-batches, each normalised by the global
    count (the collated num_loss_items of the whole batch), sums to the one-batch loss, and so do the gradients. (Here one process
    sums every share's gradients; in training, train_step divides the normaliser by processes x
    accumulation because DDP averages and accelerate divides.)"""
    tok = small_tokenizer()
    model = tiny_model("glm4", len(tok))
    examples = [render_messages(c, tok, "glm4") for c in CONVERSATIONS]
    rows = [[examples[0], examples[1]], [examples[2]], [examples[3]]]
    for weighting in ("example", "token"):
        normaliser = int(collate(rows, tok.pad_token_id, loss_weighting=weighting)["num_loss_items"].sum())
        assert normaliser == (4 if weighting == "example" else sum(ex.num_targets for ex in examples))
        model.zero_grad()
        whole, _ = sft_loss(model, collate(rows, tok.pad_token_id, loss_weighting=weighting), normaliser)
        whole.backward()
        grad_whole = model.model.embed_tokens.weight.grad.clone()
        model.zero_grad()
        shares = [rows[0::2], rows[1::2]]  # process 0 and 1
        total = 0.0
        for share in shares:
            for micro in ([share[0]], share[1:]):
                if not micro:
                    continue
                loss, _ = sft_loss(model, collate(micro, tok.pad_token_id, loss_weighting=weighting), normaliser)
                loss.backward()
                total += float(loss.detach())
        assert abs(total - float(whole.detach())) <= 1e-5
        assert torch.allclose(model.model.embed_tokens.weight.grad, grad_whole, atol=1e-6)
