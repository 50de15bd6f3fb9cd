"""Attention backends through transformers' attention interface: eager == sdpa (== flex), set at
load and at run time; padding-free rows (TRL's padding_free) equal padded ones; custom 4D masks;
flash attention refused for masks it cannot express."""

import pytest
import torch
from test_modeling import VARIANTS, VOCAB, infill_batch, tiny_model

import glm_base.modeling as modeling
from glm_base import GLMConfig, GLMForCausalLM
from glm_base.modeling import build_attention_mask, glm_attention_mask


def sample_rows(lengths=(4, 9, 6), seed=7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g) for n in lengths]


def padded(rows, side="right"):
    width = max(len(r) for r in rows)
    ids, mask = torch.zeros(len(rows), width, dtype=torch.long), torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, span], mask[i, span] = r, 1
    return ids, mask


def cases():
    """name -> (forward kwargs, boolean selector of the positions whose logits count)."""
    ids, mask = padded(sample_rows(), side="left")
    infill_ids, positions, part_a = infill_batch(part_a=7, part_b=5)
    rows = sample_rows((6, 9))
    packed = torch.cat(rows)[None]
    return {
        "plain": (dict(input_ids=ids), torch.ones_like(ids, dtype=torch.bool)),
        "left_padded": (dict(input_ids=ids, attention_mask=mask), mask.bool()),
        "blank_infilling": (dict(input_ids=infill_ids, position_ids=positions, part_a_length=part_a),
                            torch.ones_like(infill_ids, dtype=torch.bool)),
        "packed_sequence_ids": (dict(input_ids=packed, position_ids=torch.cat([torch.arange(6), torch.arange(9)])[None],
                                     sequence_ids=torch.tensor([[1] * 6 + [2] * 9])),
                                torch.ones_like(packed, dtype=torch.bool)),
    }


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("case", list(cases()))
def test_eager_equals_sdpa_at_run_time_switch(arch, case):
    model = tiny_model(arch)
    inputs, real = cases()[case]
    with torch.no_grad():
        sdpa = model(**inputs).logits
        model.set_attn_implementation("eager")
        assert model.config._attn_implementation == "eager"
        out = model(**inputs, output_attentions=True)
    torch.testing.assert_close(out.logits[real], sdpa[real], rtol=0, atol=1e-5)
    batch, length = inputs["input_ids"].shape
    assert [a.shape for a in out.attentions] == [(batch, 4, length, length)] * 2


def test_implementation_chosen_at_load_is_the_one_that_runs(tmp_path, monkeypatch):
    tiny_model().save_pretrained(tmp_path)
    calls = []
    real_eager = modeling.eager_attention_forward
    monkeypatch.setattr(modeling, "eager_attention_forward", lambda *a, **k: calls.append(1) or real_eager(*a, **k))
    ids = torch.randint(0, VOCAB, (1, 6))
    eager = GLMForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = GLMForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    with torch.no_grad():
        sdpa(ids)
        assert calls == []
        eager(ids)
        assert len(calls) == 2  # one per layer
        sdpa(ids, output_attentions=True)  # weights asked of sdpa: that call runs eagerly
        assert len(calls) == 4


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_padding_free_row_equals_padded_batch(arch, implementation):
    """TRL's padding_free / packed SFT: one row, positions restarting per sequence, no mask, and the
    flash varlen lengths (which other backends ignore)."""
    model = tiny_model(arch, attn_implementation=implementation)
    rows = sample_rows()
    ids, mask = padded(rows)
    flat = torch.cat(rows)[None]
    positions = torch.cat([torch.arange(len(r)) for r in rows])[None]
    cu_seq_lens = torch.tensor([0, 4, 13, 19], dtype=torch.int32)
    labels = flat.clone()
    labels[positions == 0] = -100
    padded_labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, labels=padded_labels)
        free = model(flat, position_ids=positions, labels=labels, cu_seq_lens_q=cu_seq_lens, cu_seq_lens_k=cu_seq_lens,
                     max_length_q=9, max_length_k=9)
    torch.testing.assert_close(free.logits[0], batched.logits[mask.bool()], rtol=0, atol=1e-5)
    torch.testing.assert_close(free.loss, batched.loss, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", VARIANTS)
def test_custom_4d_masks_are_used_as_given(arch):
    """A boolean (sdpa) or additive (eager) 4D mask holding GLM's pattern gives what part_a_length gives."""
    model = tiny_model(arch)
    ids, positions, part_a = infill_batch(part_a=7, part_b=5)
    boolean = build_attention_mask(2, 12, 0, torch.device("cpu"), part_a_length=part_a)
    additive = torch.zeros(boolean.shape).masked_fill(~boolean, torch.finfo(torch.float32).min)
    with torch.no_grad():
        expected = model(ids, position_ids=positions, part_a_length=part_a).logits
        torch.testing.assert_close(model(ids, position_ids=positions, attention_mask=boolean).logits, expected,
                                   rtol=0, atol=1e-5)
        model.set_attn_implementation("eager")
        torch.testing.assert_close(model(ids, position_ids=positions, attention_mask=additive).logits, expected,
                                   rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="4D attention_mask"):
        model(ids, position_ids=positions, attention_mask=boolean, part_a_length=part_a)


def test_flash_attention_is_refused_for_masks_it_cannot_express():
    config = GLMConfig(hidden_size=64, num_attention_heads=4, vocab_size=VOCAB)
    config._attn_implementation_internal = "flash_attention_2"
    embeds = torch.zeros(2, 12, 64)
    with pytest.raises(ValueError, match="cannot express GLM's blank-infilling mask"):
        glm_attention_mask(config, embeds, None, None, None, torch.tensor([7, 7]), None, 12)
    with pytest.raises(ValueError, match="cannot express"):
        glm_attention_mask(config, embeds, None, None, None, None, torch.ones(2, 12, dtype=torch.long), 12)
    # plain causal input with padding is flash's own case: the 2D mask goes to its varlen path
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, :3] = 0
    assert glm_attention_mask(config, embeds, mask, None, None, None, None, 12).shape == (2, 12)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["left_padded", "blank_infilling", "packed_sequence_ids"])
def test_flex_attention_equals_sdpa(case):
    """flex_attention compiles its mask on CPU too (about 10 s per case)."""
    model = tiny_model("glm4")
    inputs, real = cases()[case]
    with torch.no_grad():
        sdpa = model(**inputs).logits
        model.set_attn_implementation("flex_attention")
        flex = model(**inputs).logits
    torch.testing.assert_close(flex[real], sdpa[real], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", VARIANTS)
def test_trl_padding_free_collator_batch_gives_the_padded_loss(arch):
    """The batch TRL's SFT collator builds with padding_free=True (what SFTTrainer feeds the model)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = tiny_model(arch)
    examples = [{"input_ids": row.tolist()} for row in sample_rows()]
    free = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    assert "attention_mask" not in free and free["input_ids"].shape == (1, 19)
    with torch.no_grad():
        free_loss = model(**free).loss
        padded_loss = model(**padded).loss
    torch.testing.assert_close(free_loss, padded_loss, rtol=0, atol=1e-6)


def packed_batch():
    """Two right-padded packed rows (3 + 1 sequences, then padding), as align.packing collates them."""
    rows = sample_rows((5, 7, 4, 9), seed=3)
    width = 18
    ids = torch.zeros(2, width, dtype=torch.long)
    seq = torch.zeros(2, width, dtype=torch.long)
    pos = torch.zeros(2, width, dtype=torch.long)
    for r, group in enumerate(([0, 1, 2], [3])):
        cur = 0
        for k, i in enumerate(group):
            n = len(rows[i])
            ids[r, cur:cur + n], seq[r, cur:cur + n], pos[r, cur:cur + n] = rows[i], k + 1, torch.arange(n)
            cur += n
    return dict(input_ids=ids, position_ids=pos, sequence_ids=seq, attention_mask=(seq > 0).long()), seq > 0


def test_packed_segments_are_runs_and_refuse_scattered_sequences():
    from glm_base.attention import packed_segments

    assert packed_segments(torch.tensor([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1]])) == [[(0, 2), (2, 5), (5, 6)], [(0, 6)]]
    assert packed_segments(torch.tensor([[1, 2, 1]])) is None  # only a mask can express it


def test_packed_rows_run_attention_by_segment_with_the_masked_result(monkeypatch):
    """sdpa runs packed causal rows segment by segment (varlen); logits and gradients at every real
    token equal the masked attention's (eager, which builds the mask)."""
    calls = []
    original = modeling.segment_attention_forward
    monkeypatch.setattr(modeling, "segment_attention_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    inputs, real = packed_batch()
    results = {}
    for implementation in ("sdpa", "eager"):
        model = tiny_model("glm4")
        model.set_attn_implementation(implementation)
        logits = model(**inputs).logits
        (logits[real].float() ** 2).mean().backward()
        results[implementation] = logits.detach(), {n: p.grad for n, p in model.named_parameters()}
    assert len(calls) == 2  # one per layer, sdpa only
    torch.testing.assert_close(results["sdpa"][0][real], results["eager"][0][real], rtol=0, atol=1e-5)
    for name, grad in results["sdpa"][1].items():
        torch.testing.assert_close(grad, results["eager"][1][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("inputs", ["blank_infilling", "left_padded_sequence_ids", "output_attentions"])
def test_masked_road_where_segments_cannot_express_the_input(inputs, monkeypatch):
    from glm_base.attention import varlen_segments

    config = tiny_model("glm4").config
    seq = torch.tensor([[1, 1, 2, 2]])
    if inputs == "blank_infilling":
        assert varlen_segments(config, seq, None, torch.tensor([2])) is None
    elif inputs == "left_padded_sequence_ids":  # padding that sequence_ids does not mark as 0
        assert varlen_segments(config, seq, torch.tensor([[0, 1, 1, 1]]), None) is None
    else:
        assert varlen_segments(config, seq, None, None, output_attentions=True) is None
    assert varlen_segments(config, seq, torch.ones(1, 4, dtype=torch.long), None) == [[(0, 2), (2, 4)]]


def test_flash_attention_gets_the_packed_segments_as_varlen_lengths():
    """Under flash attention a packed batch goes to the varlen kernel: no mask, cumulative lengths
    over the batch flattened to one row (transformers' ``cu_seq_lens_*``/``max_length_*``). A fake
    kernel with flash_attn_varlen_func's semantics (causal inside each cumulative-length segment)
    registered as an attention implementation gives the sdpa logits."""
    from transformers import AttentionInterface

    seen = []

    def fake_flash_varlen(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cu_seq_lens_q=None,
                          cu_seq_lens_k=None, max_length_q=None, max_length_k=None, **kwargs):
        assert attention_mask is None and torch.equal(cu_seq_lens_q, cu_seq_lens_k)
        seen.append((cu_seq_lens_q.tolist(), max_length_q))
        batch, heads, length, dim = query.shape
        flat = [t.transpose(1, 2).reshape(batch * length, -1, dim).transpose(0, 1)[None] for t in (query, key, value)]
        cuts = cu_seq_lens_q.tolist()
        pieces = [torch.nn.functional.scaled_dot_product_attention(
            *(t[:, :, s:e] for t in flat), is_causal=True, scale=scaling, enable_gqa=True) for s, e in zip(cuts, cuts[1:])]
        out = torch.cat(pieces, dim=2)[0].transpose(0, 1).reshape(batch, length, heads, dim)
        return out, None

    AttentionInterface.register("flash_attention_fake", fake_flash_varlen)
    inputs, real = packed_batch()
    model = tiny_model("glm4")
    with torch.no_grad():
        sdpa = model(**inputs).logits
        model.config._attn_implementation_internal = "flash_attention_fake"  # set_attn_implementation would load a kernel
        flash = model(**inputs).logits
    # rows of 18 tokens: [5, 7, 4, pad 2] and [9, pad 9]
    assert seen[0] == ([0, 5, 12, 16, 18, 27, 36], 9) and len(seen) == 2
    torch.testing.assert_close(flash[real], sdpa[real], rtol=0, atol=1e-5)
