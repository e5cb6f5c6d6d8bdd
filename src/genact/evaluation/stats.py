"""Is method A better than method B on the same test videos? Paired comparisons of
two classifiers: an exact McNemar test per test set, and a paired bootstrap interval
for the top-1 difference over test videos and (when there are several) seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes a, b (N,) bool:
    under "A and B are equally good", each video that only one gets right is a fair
    coin flip between them."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass
class Effect:
    """Top-1 of A minus top-1 of B in points: the mean over seeds, its 95% interval,
    the McNemar p per seed, and the verdict the interval gives."""

    mean: float
    low: float
    high: float
    per_seed: list[float]
    p_values: list[float]
    # each seed's own verdict (its videos' bootstrap alone); empty when not asked for
    seed_verdicts: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high)

    def seed_count(self) -> str:
        """How often the effect holds per seed: 'holds on 4 of 5, inconclusive on 1'."""
        n, count = len(self.seed_verdicts), self.seed_verdicts.count
        parts = [f"holds on {count('holds')} of {n}"]
        parts += [f"{v} on {count(v)}" for v in VERDICTS[1:] if count(v)]
        return ", ".join(parts)


VERDICTS = ("holds", "inconclusive", "does not hold")


def verdict(low: float, high: float) -> str:
    """An interval above 0 holds, below 0 does not hold, across 0 is inconclusive."""
    return "holds" if low > 0 else ("does not hold" if high < 0 else "inconclusive")


def paired_effect(
    a: list[np.ndarray], b: list[np.ndarray], *, draws: int = 10_000, seed: int = 0
) -> Effect:
    """A minus B, where a[s], b[s] (N_s,) bool are the two methods' right/wrong outcomes
    on seed s's test videos (the same videos, in the same order). The interval is a
    two-level paired bootstrap: draw seeds with replacement, then each drawn seed's
    videos with replacement, and take the mean over the drawn seeds of the top-1
    difference; 2.5 and 97.5 percentiles of `draws` such means. One seed: videos only."""
    if len(a) != len(b) or not a or any(len(x) != len(y) or len(x) == 0 for x, y in zip(a, b)):
        raise ValueError("a and b need the same seeds and, per seed, the same (non-empty) videos")
    diffs = [100.0 * (np.asarray(x, float) - np.asarray(y, float)) for x, y in zip(a, b)]
    rng = np.random.default_rng(seed)
    seeds = len(diffs)
    picks = rng.integers(seeds, size=(draws, seeds)) if seeds > 1 else np.zeros((draws, 1), int)
    means = np.zeros(draws)
    # position j of each draw holds seed picks[:, j], its videos drawn afresh
    for j in range(seeds):
        for s, d in enumerate(diffs):
            boot = d[rng.integers(len(d), size=(draws, len(d)))].mean(1)
            means += np.where(picks[:, j] == s, boot, 0.0)
    means /= seeds
    low, high = np.percentile(means, [2.5, 97.5])
    return Effect(
        float(np.mean([d.mean() for d in diffs])),
        float(low),
        float(high),
        [float(d.mean()) for d in diffs],
        [mcnemar_exact(x, y) for x, y in zip(a, b)],
    )
