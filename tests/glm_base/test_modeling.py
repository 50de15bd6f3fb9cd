"""GLMForCausalLM: attention-mask semantics, 2D positions, loss conventions, cache, save/load."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.modeling import build_attention_mask, extend_positions

VOCAB = 97
VARIANTS = ["glm1", "glm4"]


def tiny_model(architecture="glm4", seed=0, **overrides):
    torch.manual_seed(seed)
    values = dict(architecture=architecture, vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128)
    if architecture == "glm4":
        values["num_key_value_heads"] = 2
    values.update(overrides)
    return GLMForCausalLM(GLMConfig(**values)).eval()


def infill_batch(part_a=7, part_b=5, batch=2, seed=1):
    """A Part A of ``part_a`` tokens and a Part B span of ``part_b`` tokens with GLM 2D positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, part_a + part_b), generator=g)
    text = torch.cat([torch.arange(part_a), torch.full((part_b,), 3)])  # span's mask sits at index 3
    span = torch.cat([torch.zeros(part_a, dtype=torch.long), torch.arange(1, part_b + 1)])
    positions = torch.stack([text, span]).expand(batch, 2, -1).clone()
    return ids, positions, torch.full((batch,), part_a)


@pytest.mark.parametrize("arch", VARIANTS)
def test_part_a_does_not_see_part_b_and_part_b_is_causal(arch):
    model = tiny_model(arch)
    ids, positions, part_a = infill_batch()
    with torch.no_grad():
        base = model(ids, position_ids=positions, part_a_length=part_a).logits
        changed_b = ids.clone()
        changed_b[:, -1] = (changed_b[:, -1] + 1) % VOCAB
        after_b = model(changed_b, position_ids=positions, part_a_length=part_a).logits
        changed_a = ids.clone()
        changed_a[:, 6] = (changed_a[:, 6] + 1) % VOCAB  # last Part A token
        after_a = model(changed_a, position_ids=positions, part_a_length=part_a).logits
    # Changing the last Part B token changes nothing before it: Part A and earlier Part B.
    torch.testing.assert_close(after_b[:, :-1], base[:, :-1], rtol=0, atol=1e-6)
    assert (after_b[:, -1] - base[:, -1]).abs().max() > 1e-4
    # Part A is bidirectional: its first token sees its last one; Part B sees all of Part A.
    assert (after_a[:, 0] - base[:, 0]).abs().max() > 1e-4
    assert (after_a[:, 7:] - base[:, 7:]).abs().max() > 1e-4


def test_mask_matches_definition_on_hand_written_case():
    mask = build_attention_mask(1, 5, 0, torch.device("cpu"), part_a_length=torch.tensor([3]))[0, 0]
    expected = torch.tensor([
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert build_attention_mask(2, 5, 0, torch.device("cpu")) is None  # plain causal: SDPA's own path


@pytest.mark.parametrize("arch", VARIANTS)
def test_right_padding_does_not_change_real_tokens(arch):
    model = tiny_model(arch)
    ids, positions, part_a = infill_batch(batch=1)
    pad = 4
    padded = torch.cat([ids, torch.zeros(1, pad, dtype=torch.long)], dim=1)
    padded_pos = torch.cat([positions, torch.zeros(1, 2, pad, dtype=torch.long)], dim=2)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(1, pad, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone = model(ids, position_ids=positions, part_a_length=part_a).logits
        batched = model(padded, position_ids=padded_pos, part_a_length=part_a, attention_mask=mask).logits
    torch.testing.assert_close(batched[:, : ids.shape[1]], alone, rtol=0, atol=1e-5)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("arch", VARIANTS)
def test_packed_sequences_never_attend_across_boundaries(arch):
    model = tiny_model(arch)
    g = torch.Generator().manual_seed(3)
    first, second = torch.randint(0, VOCAB, (1, 6), generator=g), torch.randint(0, VOCAB, (1, 9), generator=g)
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(6), torch.arange(9)])[None]
    sequence_ids = torch.tensor([[0] * 6 + [1] * 9])
    with torch.no_grad():
        out = model(packed, position_ids=positions, sequence_ids=sequence_ids).logits
        torch.testing.assert_close(out[:, :6], model(first).logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(out[:, 6:], model(second).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", VARIANTS)
def test_loss_at_sop_is_the_loss_of_the_span_first_token(arch):
    model = tiny_model(arch)
    ids, positions, part_a = infill_batch(batch=1)
    sop_index, first_span_token = 7, int(ids[0, 8])
    targets = torch.full_like(ids, -100)
    targets[0, sop_index] = first_span_token
    out = model(ids, position_ids=positions, part_a_length=part_a, shift_labels=targets)
    expected = -torch.log_softmax(out.logits[0, sop_index].float(), -1)[first_span_token]
    torch.testing.assert_close(out.loss, expected)
    # labels (transformers convention) are the same targets one step later.
    labels = torch.full_like(ids, -100)
    labels[0, sop_index + 1] = first_span_token
    torch.testing.assert_close(model(ids, position_ids=positions, part_a_length=part_a, labels=labels).loss, out.loss)


def test_loss_sum_over_num_items_equals_mean():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 9))
    mean = model(ids, labels=ids).loss
    summed = model(ids, labels=ids, num_items_in_batch=torch.tensor(16)).loss
    torch.testing.assert_close(mean, summed)


@pytest.mark.parametrize("arch", VARIANTS)
def test_loss_without_logits_equals_full_loss_and_gradients(arch):
    """return_logits=False applies the output layer only at target positions: same loss, same grads."""
    ids, positions, part_a = infill_batch(part_a=9, part_b=6, batch=3)
    shift_labels = torch.full_like(ids, -100)
    shift_labels[:, 9:] = torch.roll(ids, -1, dims=1)[:, 9:]
    shift_labels[1, 12:] = -100  # a shorter span in one row
    results = []
    for return_logits in (True, False):
        model = tiny_model(arch).train()
        out = model(ids, position_ids=positions, part_a_length=part_a, shift_labels=shift_labels,
                    num_items_in_batch=torch.tensor(11.0), return_logits=return_logits)
        out.loss.backward()
        assert (out.logits is None) == (not return_logits)
        results.append((out.loss.detach(), model.lm_head.weight.grad.clone(), model.model.embed_tokens.weight.grad.clone()))
    for full, sparse in zip(*results):
        torch.testing.assert_close(full, sparse)


def test_span_positions_matter_for_glm4_and_zero_means_plain_causal():
    model = tiny_model("glm4")
    ids = torch.randint(0, VOCAB, (1, 8))
    with torch.no_grad():
        plain = model(ids).logits
        zeros = model(ids, position_ids=torch.stack([torch.arange(8), torch.zeros(8, dtype=torch.long)])[None]).logits
        spans = model(ids, position_ids=torch.stack([torch.arange(8), torch.arange(8)])[None]).logits
    torch.testing.assert_close(zeros, plain, rtol=0, atol=1e-6)
    assert (spans - plain).abs().max() > 1e-4


@pytest.mark.parametrize("arch", VARIANTS)
def test_greedy_generation_with_cache_equals_full_recompute(arch):
    model = tiny_model(arch)
    prompt = torch.randint(0, VOCAB, (2, 6))
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    full = prompt
    with torch.no_grad():
        for _ in range(8):
            nxt = model(full, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            full = torch.cat([full, nxt], dim=1)
    assert torch.equal(generated, full)


@pytest.mark.parametrize("arch", VARIANTS)
def test_infill_mode_generation_with_cache_equals_recompute(arch):
    """Generation inside Part B: text position fixed at the mask, span position counting up."""
    model = tiny_model(arch)
    ids, positions, part_a = infill_batch(part_a=7, part_b=1)  # Part A + <sop>
    generated = model.generate(ids, position_ids=positions, part_a_length=part_a, max_new_tokens=6,
                               do_sample=False, pad_token_id=0)
    full, pos = ids, positions
    with torch.no_grad():
        for _ in range(6):
            logits = model(full, position_ids=pos, part_a_length=part_a, use_cache=False).logits
            full = torch.cat([full, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            pos = extend_positions(pos, 1)
    assert torch.equal(generated, full)
    assert pos[0, 0, -1] == 3 and pos[0, 1, -1] == 7


def test_sampling_with_cache_equals_sampling_without():
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (2, 5))
    torch.manual_seed(11)
    cached = model.generate(prompt, max_new_tokens=10, do_sample=True, top_p=0.9, temperature=0.8, pad_token_id=0)
    torch.manual_seed(11)
    uncached = model.generate(prompt, max_new_tokens=10, do_sample=True, top_p=0.9, temperature=0.8,
                              pad_token_id=0, use_cache=False)
    assert torch.equal(cached, uncached)


def test_left_padded_batch_generates_what_each_prompt_generates_alone():
    model = tiny_model()
    short, long = torch.randint(3, VOCAB, (1, 4)), torch.randint(3, VOCAB, (1, 7))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), long])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    together = model.generate(batch, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    alone = model.generate(short, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(together[0, 3:], alone[0])


def test_extend_positions_rule():
    causal = torch.tensor([[[0, 1, 2], [0, 0, 0]]])
    assert extend_positions(causal, 2).tolist() == [[[0, 1, 2, 3, 4], [0, 0, 0, 0, 0]]]
    in_span = torch.tensor([[[0, 1, 2, 1], [0, 0, 0, 1]]])
    assert extend_positions(in_span, 2).tolist() == [[[0, 1, 2, 1, 1, 1], [0, 0, 0, 1, 2, 3]]]


@pytest.mark.parametrize("arch", VARIANTS)
def test_save_load_round_trip_through_auto_classes(arch, tmp_path):
    model = tiny_model(arch)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).architecture == arch
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, GLMForCausalLM)
    ids = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    if arch == "glm1":
        assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_glm1_residual_projections_use_scaled_init():
    model = tiny_model("glm1", num_hidden_layers=8, hidden_size=128)
    std = model.model.layers[0].self_attn.o_proj.weight.std().item()
    assert abs(std - 0.02 / 4) < 0.0015  # 0.02 / sqrt(2 * 8)
    assert abs(model.model.layers[0].self_attn.q_proj.weight.std().item() - 0.02) < 0.003


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=66, num_attention_heads=4), "does not divide"),
        (dict(num_attention_heads=4, num_key_value_heads=3), "must divide"),
        (dict(architecture="glm3"), "architecture"),
        (dict(architecture="glm1", num_attention_heads=4, num_key_value_heads=2), "grouped-query"),
        (dict(partial_rotary_factor=0.75), "partial_rotary_factor"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ValueError, match=message):
        GLMConfig(**{"hidden_size": 64, **overrides})


@pytest.mark.parametrize("arch", VARIANTS)
def test_gradient_checkpointing_gives_the_same_gradients(arch):
    ids = torch.randint(0, VOCAB, (2, 10))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(arch).train()
        if checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
            assert all(layer.gradient_checkpointing for layer in model.model.layers)
        model(ids, labels=ids).loss.backward()
        grads.append(model.model.layers[0].mlp.down_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("arch", VARIANTS)
def test_bf16_weights_and_autocast(arch):
    ids = torch.randint(0, VOCAB, (2, 10))
    model = tiny_model(arch)
    reference = model(ids).logits
    half = tiny_model(arch).to(torch.bfloat16)
    out = half(ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = model(ids).logits
    assert (auto.float() - reference).abs().max() < 0.1


@pytest.mark.parametrize("arch", VARIANTS)
def test_resize_token_embeddings(arch):
    model = tiny_model(arch)
    ids = torch.randint(0, VOCAB, (1, 6))
    before = model(ids).logits
    model.resize_token_embeddings(VOCAB + 5)
    assert model.config.vocab_size == VOCAB + 5
    after = model(ids).logits
    assert after.shape[-1] == VOCAB + 5
    torch.testing.assert_close(after[..., :VOCAB], before, rtol=0, atol=1e-6)
    if arch == "glm1":
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
