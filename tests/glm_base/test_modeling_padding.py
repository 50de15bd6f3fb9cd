"""Positions without ``position_ids`` follow the attention mask, as ``generate`` numbers them.

PPO recomputes the log-probs of a rollout with a plain forward on prompt + response (left-padded, no
positions); they must equal the scores ``generate`` saw.
"""

import pytest
import torch
from test_modeling import VARIANTS, VOCAB, tiny_model

from glm_base.modeling import text_positions_from_mask


def left_padded(rows: list[torch.Tensor], pad_id: int = 0):
    """Left-pad 1D tensors into (B, L) ids and mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return ids, mask


def test_text_positions_from_mask_by_hand():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert text_positions_from_mask(mask, 5).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 0, 0]]
    assert text_positions_from_mask(mask, 2).tolist() == [[1, 2], [3, 4], [0, 0]]  # the last 2 of a cached row


@pytest.mark.parametrize("arch", VARIANTS)
def test_left_padded_forward_equals_each_row_alone(arch):
    model = tiny_model(arch)
    g = torch.Generator().manual_seed(4)
    rows = [torch.randint(3, VOCAB, (n,), generator=g) for n in (4, 9, 6)]
    ids, mask = left_padded(rows)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, row in enumerate(rows):
            alone = model(row[None]).logits[0]
            torch.testing.assert_close(batched[i, -len(row):], alone, rtol=0, atol=1e-5)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("arch", VARIANTS)
def test_cached_step_on_left_padded_batch_continues_positions(arch):
    """Prefill with a cache, then one token: positions continue from each row's own length."""
    model = tiny_model(arch)
    g = torch.Generator().manual_seed(5)
    rows = [torch.randint(3, VOCAB, (n,), generator=g) for n in (3, 7)]
    ids, mask = left_padded(rows)
    nxt = torch.randint(3, VOCAB, (2, 1), generator=g)
    full_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
    with torch.no_grad():
        prefill = model(ids, attention_mask=mask, use_cache=True)
        step = model(nxt, attention_mask=full_mask, cache=prefill.cache).logits[:, -1]
        for i, row in enumerate(rows):
            alone = model(torch.cat([row, nxt[i]])[None]).logits[0, -1]
            torch.testing.assert_close(step[i], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", VARIANTS)
def test_generate_scores_equal_recomputed_log_probs_without_positions(arch):
    model = tiny_model(arch)
    g = torch.Generator().manual_seed(6)
    prompts, prompt_mask = left_padded([torch.randint(3, VOCAB, (n,), generator=g) for n in (3, 8, 5)])
    new = 6
    out = model.generate(prompts, attention_mask=prompt_mask, max_new_tokens=new, do_sample=True,
                         pad_token_id=0, eos_token_id=None, output_logits=True, return_dict_in_generate=True)
    rollout = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1)  # (B, new, V)
    mask = torch.cat([prompt_mask, torch.ones(3, new, dtype=torch.long)], 1)
    with torch.no_grad():
        logits = model(out.sequences, attention_mask=mask).logits  # a training forward: no positions
    recomputed = torch.log_softmax(logits[:, -new - 1:-1].float(), -1)
    response = out.sequences[:, -new:, None]
    diff = (rollout.gather(-1, response) - recomputed.gather(-1, response)).abs().max().item()
    assert diff <= 1e-4
    assert (rollout - recomputed).abs().max().item() <= 1e-4
