"""Every figure with its uncertainty: Wilson intervals for rates, bootstrap intervals for means.

Unlearning papers quote defence success rates from a few dozen images without error bars,
which is one reason their numbers disagree. Here a rate is never a bare float: it is an
``Estimate`` carrying its count, its sample size and a 95 % interval, and reports print all
three. The interval maths is scipy's (``binomtest(...).proportion_ci(method="wilson")`` and
``scipy.stats.bootstrap``), seeded so that a report repeats bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % interval; ``k`` is set for rates (k of n), None for means."""

    value: float
    low: float
    high: float
    n: int
    k: int | None = None

    def to_dict(self) -> dict:
        return {key: v for key, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "Estimate":
        return cls(float(data["value"]), float(data["low"]), float(data["high"]), int(data["n"]), data.get("k"))

    def format(self, spec: str = ".2f") -> str:
        """'0.83 [0.65, 0.93] n=48'."""
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}] n={self.n}"

    def overlaps(self, other: "Estimate") -> bool:
        """True when the two intervals overlap: the difference is then called inside the noise
        (a conservative reading: non-overlap implies a significant difference, not the reverse)."""
        return self.low <= other.high and other.low <= self.high


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """The rate k/n with its Wilson score interval, which stays inside [0, 1] and is sensible at
    k = 0 or k = n, where the normal approximation collapses to a zero-width interval."""
    from scipy.stats import binomtest

    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"a rate needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(k / n, float(ci.low), float(ci.high), n, k)


def rate(hits: Sequence[bool] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """Share of true values, with its Wilson interval."""
    hits = np.asarray(hits, dtype=bool)
    return wilson(int(hits.sum()), hits.size, confidence)


def pooled_rate(estimates: Sequence[Estimate], confidence: float = CONFIDENCE) -> Estimate:
    """Counts summed over seeds, then one Wilson interval: images are pooled as if independent.
    Seed-to-seed variation (different pairs, training and attack seeds) is shown beside it
    by the per-seed figures, not folded into this interval."""
    if any(e.k is None for e in estimates):
        raise ValueError("pooled_rate takes rates (estimates with k)")
    return wilson(sum(e.k for e in estimates), sum(e.n for e in estimates), confidence)


def seed_mean(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean over seeds with a Student-t interval (n = number of seeds): for figures that cannot
    be pooled image by image (FID, CLIP score). One seed, or equal values: the point itself."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2 or np.all(x == x[0]):
        return Estimate(mean, mean, mean, len(x))
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Estimate(mean, mean - half, mean + half, len(x))


def across_seeds(rates: Sequence[float], confidence: float = CONFIDENCE, at_least: Estimate | None = None) -> Estimate:
    """A rate's mean over seeds with a Student-t interval (n = seeds), clipped to [0, 1] and, given
    ``at_least`` (the pooled Wilson interval), never narrower than it on either side: seeds that
    agree do not remove the image-level noise.

    The Wilson interval of ``pooled_rate`` counts images as independent, but images of one attack
    run share what the run learned or found: an inversion's images of a seed all use one learned
    embedding, a prompt search's images of a prompt one prompt. Seeds repeat everything (pairs,
    training, attack runs), so the spread of per-seed rates is the variation a user who reruns
    the study would see; with three seeds the interval is wide, and that is the honest width."""
    e = seed_mean(rates, confidence)
    low, high = max(0.0, e.low), min(1.0, e.high)
    if at_least is not None:
        low, high = min(low, at_least.low), max(high, at_least.high)
    return dataclasses.replace(e, low=low, high=high)


def bootstrap_mean(samples: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE,
                   n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """The mean of per-prompt values with a percentile bootstrap interval over prompts."""
    from scipy.stats import bootstrap

    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_mean needs at least one sample")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):  # no spread to resample: the interval is the point
        return Estimate(mean, mean, mean, int(x.size))
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), int(x.size))


def bootstrap_statistic(statistic, samples: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = 200,
                        seed: int = 0) -> Estimate:
    """Any statistic of a sample of rows (e.g. FID of generated features against a fixed
    reference), with a percentile interval from resampling the rows."""
    x = np.asarray(samples)
    value = float(statistic(x))
    rng = np.random.default_rng(seed)
    draws = [float(statistic(x[rng.integers(0, len(x), len(x))])) for _ in range(n_resamples)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), int(len(x)))
