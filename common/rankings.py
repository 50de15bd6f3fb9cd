"""Rankings of K responses and the ordered preference pairs they imply.

A ranking gives each response a rank, 1 = best; equal ranks are ties. InstructGPT trains a reward
model on all K-choose-2 pairs of a ranking; ties give no pair. The annotation app's ``pairs``
export and the reward model's data loader both expand rankings here, so they agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Pair:
    """Response ``chosen`` is ranked above ``rejected``; ``margin`` is their rank gap (>= 1)."""

    chosen: int
    rejected: int
    margin: float


def ranking_pairs(ranking: Sequence[int]) -> list[Pair]:
    """Every ordered pair ``(i, j)`` with ``ranking[i] < ranking[j]``, in index order of ``i`` then ``j``.

    >>> [(p.chosen, p.rejected, p.margin) for p in ranking_pairs([2, 1, 2])]
    [(1, 0, 1.0), (1, 2, 1.0)]
    """
    return [Pair(i, j, float(ranking[j] - ranking[i]))
            for i in range(len(ranking)) for j in range(len(ranking)) if ranking[i] < ranking[j]]


def dense_ranking(scores: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Ranks from scores: 1 = best, equal scores share a rank, ranks have no gaps.

    >>> dense_ranking([0.5, 2.0, 0.5])
    [2, 1, 2]
    """
    levels = sorted(set(scores), reverse=higher_is_better)
    return [levels.index(s) + 1 for s in scores]
