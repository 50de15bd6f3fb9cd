"""Consensus and agreement statistics on hand-computed examples."""
import pytest

from annotation_ui import agreement as ag


def test_borda_with_ties():
    ranks, pts = ag.borda_consensus([[1, 2, 3], [1, 3, 2], [2, 1, 3]])
    # points: r0 = 2+2+1 = 5, r1 = 1+0+2 = 3, r2 = 0+1+0 = 1 (means /3)
    assert pts == pytest.approx([5 / 3, 1.0, 1 / 3])
    assert ranks == [1, 2, 3]
    assert ag.borda_consensus([[1, 2], [2, 1]])[0] == [1, 1]  # an even split ties
    assert ag.borda_consensus([[1, 1, 2]])[0] == [1, 1, 2]


def test_ranked_pairs():
    # Condorcet cycle a>b (2-1), b>c (2-1), c>a (2-1): the weakest... all equal strength; order by index locks a>b, b>c
    assert ag.ranked_pairs_consensus([[1, 2, 3], [3, 1, 2], [2, 3, 1]]) == [1, 2, 3]
    assert ag.ranked_pairs_consensus([[2, 1, 3], [2, 1, 3], [1, 2, 3]]) == [2, 1, 3]
    assert ag.ranked_pairs_consensus([[1, 1, 2]]) == [1, 1, 2]


def test_kendalls_w():
    assert ag.kendalls_w([[1, 2, 3], [1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    assert ag.kendalls_w([[1, 2], [2, 1]]) == pytest.approx(0.0)
    # m=2, n=3: [1,2,3] and [1,3,2]: totals 2,5,5; mean 4; S = 4+1+1 = 6; W = 12*6/(4*24) = 0.75
    assert ag.kendalls_w([[1, 2, 3], [1, 3, 2]]) == pytest.approx(0.75)
    assert ag.kendalls_w([[1, 2, 3]]) is None
    assert ag.kendalls_w([[1, 1], [1, 1]]) is None


def test_tau_b_and_average_ranks():
    assert ag.kendall_tau_b([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert ag.kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # one tie in b: conc 2, disc 0, ties_b 1 -> 2 / sqrt(3 * 2)
    assert ag.kendall_tau_b([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / 6 ** 0.5)
    assert ag.kendall_tau_b([1, 1], [1, 2]) is None
    assert ag.average_ranks([1, 2, 2, 3]) == [1.0, 2.5, 2.5, 4.0]
    assert ag.dense([0.5, 2.0, 2.0, 1.0]) == [3, 1, 1, 2]
