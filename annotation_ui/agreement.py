"""Consensus across annotators and agreement statistics, in plain Python (no scipy).

Conventions: a ranking is a list of ranks aligned with an item's responses, 1 = best, ties share a
rank. Everything here is deterministic.

- `borda_consensus`: each annotator gives a response one point per response ranked strictly worse
  and half a point per tie; responses are ordered by mean points (equal means tie).
- `ranked_pairs_consensus` (Tideman): pairwise majorities locked in order of strength unless they
  would create a cycle; responses with no locked preference between them in either direction and
  equal Borda points tie.
- `kendalls_w`: Kendall's coefficient of concordance with the tie correction, per item.
- `kendall_tau_b`: between two rankings of the same responses (tie-aware); per-annotator agreement
  is the mean tau-b to the leave-one-out consensus of the *other* annotators of each item.
"""

from __future__ import annotations

import math
from itertools import combinations


def dense(scores: list[float], higher_is_better: bool = True) -> list[int]:
    """Dense ranks (1 = best) from scores; scores equal to 9 decimals tie."""
    keys = [round(float(x), 9) for x in scores]
    pos = {v: k + 1 for k, v in enumerate(sorted(set(keys), reverse=higher_is_better))}
    return [pos[k] for k in keys]


def borda_points(ranking: list[int]) -> list[float]:
    n = len(ranking)
    return [sum(1.0 if ranking[j] > ranking[i] else 0.5 if ranking[j] == ranking[i] else 0.0
                for j in range(n) if j != i) for i in range(n)]


def borda_consensus(rankings: list[list[int]]) -> tuple[list[int], list[float]]:
    """(consensus ranks, mean Borda points per response)."""
    if not rankings:
        raise ValueError("borda_consensus needs at least one ranking")
    n = len(rankings[0])
    pts = [0.0] * n
    for r in rankings:
        for i, p in enumerate(borda_points(r)):
            pts[i] += p
    mean = [p / len(rankings) for p in pts]
    return dense(mean), mean


def ranked_pairs_consensus(rankings: list[list[int]]) -> list[int]:
    n = len(rankings[0])
    wins = [[0] * n for _ in range(n)]
    for r in rankings:
        for i in range(n):
            for j in range(n):
                if r[i] < r[j]:
                    wins[i][j] += 1
    majorities = sorted(
        ((wins[i][j] - wins[j][i], wins[i][j], i, j) for i in range(n) for j in range(n) if wins[i][j] > wins[j][i]),
        key=lambda t: (-t[0], -t[1], t[2], t[3]),
    )
    locked: set[tuple[int, int]] = set()

    def reaches(a: int, b: int) -> bool:
        stack, seen = [a], {a}
        while stack:
            x = stack.pop()
            if x == b:
                return True
            for (u, v) in locked:
                if u == x and v not in seen:
                    seen.add(v)
                    stack.append(v)
        return False

    for _, _, i, j in majorities:
        if not reaches(j, i):
            locked.add((i, j))
    # rank = 1 + length of the longest locked chain above a response (ties where no chain separates)
    depth = [0] * n
    for _ in range(n):
        for (u, v) in locked:
            depth[v] = max(depth[v], depth[u] + 1)
    return dense([float(d) for d in depth], higher_is_better=False)


def average_ranks(ranking: list[int]) -> list[float]:
    """Ranks with ties given the mean of the positions they occupy (1..n), for Kendall's W."""
    n = len(ranking)
    order = sorted(range(n), key=lambda i: ranking[i])
    out = [0.0] * n
    pos = 0
    while pos < n:
        end = pos
        while end + 1 < n and ranking[order[end + 1]] == ranking[order[pos]]:
            end += 1
        avg = (pos + end) / 2 + 1
        for k in range(pos, end + 1):
            out[order[k]] = avg
        pos = end + 1
    return out


def kendalls_w(rankings: list[list[int]]) -> float | None:
    """Kendall's W (tie-corrected) of m >= 2 rankings of n >= 2 responses; None when undefined."""
    m = len(rankings)
    if m < 2:
        return None
    n = len(rankings[0])
    if n < 2:
        return None
    R = [average_ranks(r) for r in rankings]
    totals = [sum(R[a][i] for a in range(m)) for i in range(n)]
    mean_total = m * (n + 1) / 2
    S = sum((t - mean_total) ** 2 for t in totals)
    T = 0.0
    for r in rankings:
        counts: dict[int, int] = {}
        for v in r:
            counts[v] = counts.get(v, 0) + 1
        T += sum(t ** 3 - t for t in counts.values())
    denom = m * m * (n ** 3 - n) - m * T
    if denom <= 0:
        return None  # every annotator tied everything: agreement is undefined
    return 12 * S / denom


def kendall_tau_b(a: list[int], b: list[int]) -> float | None:
    """Kendall's tau-b between two rankings (1 = best); None when either is all ties."""
    conc = disc = ties_a = ties_b = 0
    for i, j in combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            conc += 1
        else:
            disc += 1
    denom = math.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))
    if denom == 0:
        return None
    return (conc - disc) / denom


def consensus(rankings: list[list[int]], method: str = "borda") -> list[int]:
    if method == "borda":
        return borda_consensus(rankings)[0]
    if method == "ranked_pairs":
        return ranked_pairs_consensus(rankings)
    raise ValueError(f"consensus method must be 'borda' or 'ranked_pairs', got {method!r}")


def disagreement(rankings: list[list[int]]) -> float:
    """1 - W for an item (0 = full agreement, 1 = none); 0 for fewer than two rankings."""
    w = kendalls_w(rankings)
    return 0.0 if w is None else 1.0 - w


def mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None
