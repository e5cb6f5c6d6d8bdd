"""Paired comparisons: exact McNemar against hand-computed binomial tails, and the
paired bootstrap's interval: its coverage, pairing and seed level."""

import numpy as np
import pytest

from genact.evaluation.stats import mcnemar_exact, paired_effect


def outcomes(
    only_a: int, only_b: int, both: int = 5, neither: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def test_mcnemar_is_the_exact_two_sided_binomial_tail_of_the_discordant_videos():
    a, b = outcomes(9, 1)
    # P(X <= 1), X ~ Bin(10, 1/2), doubled
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 10) / 2**10)
    assert mcnemar_exact(b, a) == mcnemar_exact(a, b)
    a, b = outcomes(3, 3)
    assert mcnemar_exact(a, b) == 1.0  # capped: a tie is no evidence either way
    a, b = outcomes(0, 0, both=7)
    assert mcnemar_exact(a, b) == 1.0
    a, b = outcomes(20, 0, both=100, neither=100)
    # agreement on 200 videos does not water it down
    assert mcnemar_exact(a, b) == pytest.approx(2 / 2**20)


def test_identical_methods_have_a_zero_effect_and_a_clear_winner_holds():
    a, b = outcomes(0, 0, both=40, neither=60)
    same = paired_effect([a], [a.copy()], draws=500)
    assert (same.mean, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "inconclusive")
    a, b = outcomes(30, 2, both=40, neither=28)
    win = paired_effect([a, a], [b, b], draws=2000)
    assert win.mean == pytest.approx(28.0) and win.per_seed == pytest.approx([28.0, 28.0])
    assert 0 < win.low < 28 < win.high and win.verdict == "holds"
    lose = paired_effect([b], [a], draws=2000)
    assert lose.verdict == "does not hold" and lose.high < 0 and lose.p_values[0] < 1e-6


def test_the_interval_is_paired_and_covers_the_truth_about_95_percent_of_the_time():
    """A and B agree on 90% of videos and are equally good: the paired interval is
    narrow and covers 0 in about 95% of test sets; an unpaired one would be about
    three times wider and cover 0 nearly always."""
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for trial in range(200):
        a = rng.random(300) < 0.6
        flip = rng.random(300) < 0.1
        b = np.where(flip, rng.random(300) < 0.6, a)
        e = paired_effect([a], [b], draws=1000, seed=trial)
        covered += e.low <= 100 * (0.6 - 0.6) <= e.high
        widths.append(e.high - e.low)
    assert 0.89 <= covered / 200 <= 0.99
    # the standard error of a difference of 300 paired videos that differ on ~5%: about 1.8 points
    assert 4.5 < np.mean(widths) < 9


def test_disagreeing_seeds_widen_the_interval():
    """Seed 0: A wins every video; seed 1: B wins every video. Within a seed there is
    no doubt, so only resampling the seeds shows that the effect is not settled."""
    ones, zeros = np.ones(50, bool), np.zeros(50, bool)
    e = paired_effect([ones, zeros], [zeros, ones], draws=4000)
    assert e.mean == 0 and e.per_seed == [100.0, -100.0]
    assert (
        e.low == pytest.approx(-100)
        and e.high == pytest.approx(100)
        and e.verdict == "inconclusive"
    )


def test_mismatched_videos_are_refused():
    with pytest.raises(ValueError, match="same"):
        paired_effect([np.ones(3, bool)], [np.ones(4, bool)])
    with pytest.raises(ValueError, match="same"):
        paired_effect([np.ones(3, bool)], [])
