"""Scoring responses with a reward model, and pairwise accuracy of any scores against preferences.

:func:`score_groups` runs a reward model over encoded groups (each response once, batches of similar
lengths); :func:`pair_outcomes` and :func:`accuracy_report` turn per-response scores (a model's or a
rule's) into pairwise accuracy overall, per category and per language. A pair is right when the
chosen response scores higher; **equal scores count as half right** (a scorer that cannot tell two
responses apart is at chance on that pair, not wrong).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from .data import EncodedGroup


@torch.no_grad()
def score_groups(model, groups: Sequence[EncodedGroup], pad_id: int, batch_size: int = 32,
                 device: str | torch.device | None = None) -> list[list[float]]:
    """Each group's response rewards (``model`` is a reward model: one score per row). Rows are sorted
    by length into batches of ``batch_size``, so padding stays small; the model's train/eval mode is
    restored afterwards."""
    device = device or next(model.parameters()).device
    flat = [(g, k, ids) for g, group in enumerate(groups) for k, ids in enumerate(group.input_ids)]
    order = sorted(range(len(flat)), key=lambda i: len(flat[i][2]))
    scores: list[list[float]] = [[0.0] * len(group.input_ids) for group in groups]
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = [flat[i] for i in order[start:start + batch_size]]
        length = max(len(ids) for _, _, ids in chunk)
        input_ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, (_, _, ids) in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits[:, 0]
        for (g, k, _), value in zip(chunk, out.float().cpu().tolist()):
            scores[g][k] = value
    model.train(was_training)
    return scores


@dataclass(frozen=True)
class PairOutcome:
    """One preference pair as a scorer saw it: 1 right, 0.5 tie, 0 wrong."""

    group: int
    category: str
    lang: str
    chosen_score: float
    rejected_score: float

    @property
    def outcome(self) -> float:
        return 1.0 if self.chosen_score > self.rejected_score else 0.5 if self.chosen_score == self.rejected_score else 0.0


def pair_outcomes(groups: Sequence, scores: Sequence[Sequence[float]]) -> list[PairOutcome]:
    """Every pair of every group (``EncodedGroup`` or ``PreferenceGroup``) with its scores."""
    out = []
    for g, (group, group_scores) in enumerate(zip(groups, scores)):
        for pair in group.pairs:
            chosen, rejected = (pair[0], pair[1]) if isinstance(pair, tuple) else (pair.chosen, pair.rejected)
            out.append(PairOutcome(g, group.category, group.lang, float(group_scores[chosen]),
                                   float(group_scores[rejected])))
    return out


def accuracy(outcomes: Sequence[PairOutcome]) -> float:
    return sum(o.outcome for o in outcomes) / len(outcomes) if outcomes else float("nan")


def accuracy_report(outcomes: Sequence[PairOutcome]) -> dict:
    """``{"accuracy", "pairs", "by_category": {c: acc}, "by_lang": {l: acc}}`` (ties count half)."""
    by_category, by_lang = defaultdict(list), defaultdict(list)
    for o in outcomes:
        by_category[o.category].append(o)
        by_lang[o.lang].append(o)
    return {"accuracy": accuracy(outcomes), "pairs": len(outcomes),
            "by_category": {k: accuracy(v) for k, v in sorted(by_category.items())},
            "by_lang": {k: accuracy(v) for k, v in sorted(by_lang.items())}}
