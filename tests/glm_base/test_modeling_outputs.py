"""Outputs and arguments as transformers' own models take them: attention weights, hidden states,
config flags, return_dict, labels with shift_labels, past_key_values, AutoModel, assisted decoding."""

import pytest
import torch
from test_modeling import VARIANTS, VOCAB, infill_batch, tiny_model
from transformers import AutoModel, AutoModelForCausalLM

from glm_base import GLMForCausalLM, GLMModel


@pytest.mark.parametrize("arch", VARIANTS)
def test_attention_weights_are_causal_rows_of_a_softmax(arch):
    model = tiny_model(arch)  # sdpa by default: the call with output_attentions runs eagerly
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        out = model(ids, output_attentions=True)
        plain = model(ids).logits
    assert len(out.attentions) == 2
    for weights in out.attentions:
        assert weights.shape == (2, 4, 7, 7)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
        assert weights.triu(1).abs().max() == 0  # nothing above the diagonal
    torch.testing.assert_close(out.logits, plain, rtol=0, atol=1e-5)  # eager == sdpa
    base = model.model(ids, output_attentions=True)  # the base model takes the flag too
    torch.testing.assert_close(base.attentions[0], out.attentions[0])


def test_attention_weights_show_part_a_bidirectional():
    model = tiny_model()
    ids, positions, part_a = infill_batch(part_a=7, part_b=5)
    with torch.no_grad():
        weights = model(ids, position_ids=positions, part_a_length=part_a, output_attentions=True).attentions[0]
    assert (weights[:, :, :7, :7] > 0).all()  # Part A sees all of Part A
    assert weights[:, :, :7, 7:].abs().max() == 0  # ... and nothing of Part B
    assert weights[:, :, 7:, 7:].triu(1).abs().max() == 0  # Part B causal


@pytest.mark.parametrize("arch", VARIANTS)
def test_generate_returns_attentions_per_step(arch):
    model = tiny_model(arch)
    prompt = torch.randint(3, VOCAB, (2, 5))
    out = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0, output_attentions=True,
                         return_dict_in_generate=True)
    assert len(out.attentions) == 3 and all(len(step) == 2 for step in out.attentions)
    assert out.attentions[0][0].shape == (2, 4, 5, 5)
    assert out.attentions[1][0].shape == (2, 4, 1, 6) and out.attentions[2][1].shape == (2, 4, 1, 7)
    plain = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert torch.equal(out.sequences, plain)


@pytest.mark.parametrize("arch", VARIANTS)
def test_assisted_decoding_with_a_draft_model_equals_greedy(arch):
    model, draft = tiny_model(arch), tiny_model(arch, seed=3, num_hidden_layers=1)
    prompt = torch.randint(3, VOCAB, (1, 6))
    greedy = model.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assisted = model.generate(prompt, assistant_model=draft, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(assisted, greedy)


def test_output_flags_set_on_the_config_are_honoured():
    model = tiny_model(attn_implementation="eager")
    ids = torch.randint(0, VOCAB, (1, 6))
    assert model(ids).hidden_states is None and model(ids).attentions is None
    model.config.output_hidden_states = True
    model.config.output_attentions = True
    with torch.no_grad():
        out = model(ids)
        base = model.model(ids)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2  # embeddings + 2 layers
    torch.testing.assert_close(out.hidden_states[-1], base.last_hidden_state)
    assert out.attentions[1].shape == (1, 4, 6, 6)
    assert model(ids, output_hidden_states=False).hidden_states is None  # the argument wins


def test_return_dict_false_gives_tuples():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (1, 6))
    with torch.no_grad():
        loss, logits, cache = model(ids, labels=ids, return_dict=False)
        hidden, base_cache = model.model(ids, return_dict=False)
    torch.testing.assert_close(loss, model(ids, labels=ids).loss)
    assert logits.shape == (1, 6, VOCAB) and hidden.shape == (1, 6, 64)
    assert cache.get_seq_length() == base_cache.get_seq_length() == 6


def test_shift_labels_win_over_labels():
    """transformers' Trainer passes both; the aligned targets are the ones meant."""
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 8))
    shift_labels = torch.full_like(ids, -100)
    shift_labels[:, 3] = 5
    with torch.no_grad():
        both = model(ids, labels=ids, shift_labels=shift_labels).loss
        aligned = model(ids, shift_labels=shift_labels).loss
        shifted = model(ids, labels=ids).loss
    torch.testing.assert_close(both, aligned, rtol=0, atol=0)
    assert abs(both - shifted) > 1e-3


@pytest.mark.parametrize("arch", VARIANTS)
def test_base_model_takes_past_key_values(arch):
    model = tiny_model(arch)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        full = model.model(ids).last_hidden_state
        first = model.model(ids[:, :6], use_cache=True)
        rest = model.model(ids[:, 6:], past_key_values=first.past_key_values).last_hidden_state
        torch.testing.assert_close(rest, full[:, 6:], rtol=0, atol=1e-5)
        first = model.model(ids[:, :6], use_cache=True)
        model.config.use_cache = False  # as trainers set it: a given cache is still continued
        unreturned = model.model(ids[:, 6:], past_key_values=first.past_key_values)
    assert unreturned.past_key_values is None
    torch.testing.assert_close(unreturned.last_hidden_state, full[:, 6:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", VARIANTS)
def test_auto_model_loads_the_base_model(arch, tmp_path):
    model = tiny_model(arch)
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is GLMModel
    ids = torch.randint(0, VOCAB, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(base(ids).last_hidden_state, model.model(ids).last_hidden_state, rtol=0, atol=0)
    assert type(AutoModel.from_config(model.config)) is GLMModel
    assert type(AutoModelForCausalLM.from_config(model.config)) is GLMForCausalLM


def test_unknown_arguments_are_refused():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (1, 5))
    with pytest.raises(TypeError, match="part_a_len"):
        model(ids, part_a_len=3)
    with pytest.raises(TypeError, match="part_a_len"):
        model.model(ids, part_a_len=3)
