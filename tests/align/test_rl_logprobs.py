"""Log-probs from logits (hand computations) and from a model (left padding changes nothing)."""

import math

import pytest
import torch

from align.rl.logprobs import logprobs_from_logits, positions_from_mask, response_logprobs
from tests.align.rl_helpers import tiny_model


def test_logprobs_from_logits_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [2.0, 2.0]]])
    tokens = torch.tensor([[1, 0]])
    assert logprobs_from_logits(logits, tokens).tolist()[0] == pytest.approx([math.log(0.75), math.log(0.5)])
    # temperature 2: logits / 2 = [0, ln(3)/2] -> p(1) = sqrt(3) / (1 + sqrt(3))
    s3 = math.sqrt(3.0)
    assert logprobs_from_logits(logits, tokens, temperature=2.0)[0, 0].item() == pytest.approx(math.log(s3 / (1 + s3)))
    assert logprobs_from_logits(logits, tokens, mask=torch.tensor([[1, 0]])).tolist()[0] == pytest.approx(
        [math.log(0.75), 0.0])
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, tokens, temperature=0.0)


def test_chunked_equals_full_log_softmax():
    torch.manual_seed(0)
    logits, tokens = torch.randn(3, 7, 50) * 4, torch.randint(0, 50, (3, 7))
    full = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, tokens, 0.7, chunk_rows=4), full)
    torch.testing.assert_close(logprobs_from_logits(logits.bfloat16(), tokens, 0.7),
                               torch.log_softmax(logits.bfloat16().float() / 0.7, -1).gather(-1, tokens[..., None])[..., 0])


def test_positions_from_mask():
    assert positions_from_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])).tolist() == [
        [0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


def test_response_logprobs_left_padding_changes_nothing(architecture):
    model = tiny_model(architecture)
    prompt, response = [5, 6, 7], [8, 9, 10, 11]
    alone = response_logprobs(model, torch.tensor([prompt + response]), torch.ones(1, 7, dtype=torch.long), 4,
                              temperature=0.8)
    padded_ids = torch.tensor([[0, 0] + prompt + response, [3, 4, 5, 6, 7, 8, 9, 10, 11]])
    padded_mask = torch.tensor([[0, 0] + [1] * 7, [1] * 9])
    batch = response_logprobs(model, padded_ids, padded_mask, 4, temperature=0.8)
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=0)
    # by hand from the full logits of the unpadded row
    logits = model(torch.tensor([prompt + response])).logits[0, 2:6] / 0.8
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(response)[:, None])[:, 0]
    torch.testing.assert_close(alone[0], expected, atol=1e-5, rtol=0)


def test_response_logprobs_has_gradients():
    model = tiny_model("glm4").train()
    lp = response_logprobs(model, torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4, dtype=torch.long), 2)
    lp.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
