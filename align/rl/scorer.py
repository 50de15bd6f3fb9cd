"""Sequence scores for PPO: a reward model and the rule rewards, weighed into one score per response.

The reward model is a ``GLMForSequenceClassification`` directory (``num_labels`` 1, centred through
``config.reward_offset``). It reads each response as the reward-model trainer (``rewards.train``)
rendered its training rows: ``tokenizer.apply_chat_template(prompt_messages + [assistant reply])``
(plus the observation turn of the tools it was trained to read, :mod:`rewards.evidence`)
followed by the token that ends a reply (``<|user|>`` for GLM tokenizers, else eos), the score read
at that last token; a row longer than ``max_length`` loses prompt tokens after the template's
``[gMASK]<sop>`` head (never response tokens). Rows are right-padded.

``score = rm_weight * reward_model + sum_rule weight_rule * rule`` (:class:`rewards.rules.RuleRewards`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch


def reward_model_ids(tokenizer, messages: Sequence[dict], response: str, max_length: int, evidence=None,
                     renderer=None) -> list[int]:
    """Token ids the reward model scores for ``response`` to ``messages`` (see the module docstring),
    rendered by the reward-model trainer's own :class:`rewards.data.Renderer` (``evidence``: the
    tools the reward model reads, :func:`rewards.evidence.load_evidence`). Raises ``ValueError`` when
    even the response with the template head does not fit ``max_length``."""
    from rewards.data import Renderer, RowTooLong

    renderer = renderer or Renderer(tokenizer, max_length, "left", evidence)
    try:
        return renderer(list(messages), response)[0]
    except RowTooLong as too_long:
        raise ValueError(f"a response of {too_long.response_tokens} tokens does not fit the reward model's "
                         f"max_length={max_length}; raise reward.max_length or lower rollout.max_new_tokens") from None


@torch.no_grad()
def reward_model_scores(model, tokenizer, messages: Sequence[Sequence[dict]], responses: Sequence[str],
                        max_length: int = 1024, batch_size: int = 16, evidence=None) -> torch.Tensor:
    """``(N,)`` float32 scores of ``responses`` (one per conversation in ``messages``), on the CPU."""
    from rewards.data import Renderer

    if len(messages) != len(responses):
        raise ValueError(f"got {len(messages)} prompts but {len(responses)} responses")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    renderer = Renderer(tokenizer, max_length, "left", evidence)
    scores = []
    for start in range(0, len(responses), batch_size):
        rows = [reward_model_ids(tokenizer, m, r, max_length, renderer=renderer)
                for m, r in zip(messages[start:start + batch_size], responses[start:start + batch_size])]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores.append(logits[:, 0].float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


@dataclass
class ScoredBatch:
    """``total`` ``(N,)`` the score PPO trains on; ``parts`` per source, each ``(N,)``: ``rm`` (the
    reward model's, unweighted) and ``rules/<name>`` (each rule's, unweighted)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


class Scorer:
    """Reward model and rules together: ``score(messages, responses, metadata) -> ScoredBatch``."""

    def __init__(self, rules=None, reward_model=None, reward_tokenizer=None, rm_weight: float = 1.0,
                 max_length: int = 1024, batch_size: int = 16, reward_evidence=None):
        if reward_model is None and (rules is None or not rules.rules):
            raise ValueError("nothing to score with: give a reward model or at least one rule")
        self.rules, self.reward_model, self.reward_tokenizer = rules, reward_model, reward_tokenizer
        self.rm_weight, self.max_length, self.batch_size = rm_weight, max_length, batch_size
        self.reward_evidence = reward_evidence  # the tools the reward model reads (rewards.evidence)

    def score(self, messages: Sequence[Sequence[dict]], responses: Sequence[str],
              metadata: Sequence[Mapping]) -> ScoredBatch:
        n = len(responses)
        total = torch.zeros(n)
        parts: dict[str, torch.Tensor] = {}
        if self.reward_model is not None:
            rm = reward_model_scores(self.reward_model, self.reward_tokenizer, messages, responses, self.max_length,
                                     self.batch_size, self.reward_evidence)
            parts["rm"] = rm
            total += self.rm_weight * rm
        if self.rules is not None and self.rules.rules:
            combined = self.rules.score([list(m) for m in messages], list(responses), list(metadata))
            for name, scores in combined.per_rule.items():
                parts[f"rules/{name}"] = torch.tensor(scores.scores, dtype=torch.float32)
            total += torch.tensor(combined.total, dtype=torch.float32)
        return ScoredBatch(total, parts)
