"""course.serving.latency: percentiles, their confidence intervals, CDFs and ratios on known samples."""

from __future__ import annotations

import numpy as np
import pytest

from course.serving import latency

pytestmark = pytest.mark.unit


def skewed(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Latency-like samples: a lognormal body with a 3% slow tail."""
    rng = np.random.default_rng(seed)
    body = rng.lognormal(mean=0.0, sigma=0.3, size=n)
    slow = rng.random(n) < 0.03
    return np.where(slow, body + 40.0, body)


def test_percentile_matches_order_statistics():
    x = np.arange(1, 101, dtype=float)  # 1..100
    assert latency.percentile(x, 50) == pytest.approx(50.5)
    assert latency.percentile(x, 95) == pytest.approx(95.05)
    assert latency.percentile(x, 100) == 100.0
    assert latency.percentile(x[::-1], 95) == pytest.approx(95.05), "order of the samples must not matter"
    with pytest.raises(ValueError, match="no samples"):
        latency.percentile([], 95)
    with pytest.raises(ValueError, match="between 0 and 100"):
        latency.percentile(x, 0.95 * 1000)


def test_p95_of_a_skewed_sample_is_not_mean_plus_two_sigma():
    x = skewed()
    p95 = latency.percentile(x, 95)
    assert np.mean(x <= p95) == pytest.approx(0.95, abs=0.002)
    assert abs((x.mean() + 2 * x.std()) - p95) > 1.0, "mean + 2 sigma misplaces the p95 of skewed latencies"


def test_confidence_interval_brackets_the_truth_and_narrows_with_samples():
    rng = np.random.default_rng(1)
    true_p95 = float(np.exp(1.6448536 * 0.5))  # lognormal(0, 0.5)
    covered = 0
    for _ in range(200):
        low, high = latency.percentile_ci(rng.lognormal(0.0, 0.5, 300), 95)
        covered += low <= true_p95 <= high
    assert 0.9 <= covered / 200 <= 0.995, f"a 95% interval should cover the truth ~95% of the time, got {covered}/200"
    small = np.subtract(*latency.percentile_ci(rng.lognormal(0.0, 0.5, 100), 95)[::-1])
    large = np.subtract(*latency.percentile_ci(rng.lognormal(0.0, 0.5, 10_000), 95)[::-1])
    assert large < small / 4
    low, high = latency.percentile_ci(rng.lognormal(0.0, 0.5, 50), 99)
    assert high == np.inf, "50 samples say nothing about an upper bound of the p99"


def test_summary_and_ratio():
    x = skewed()
    s = latency.summarize(x)
    assert s.n == x.size and s.p50 < s.p95 < s.p99 <= s.max
    assert s.p95_low <= s.p95 <= s.p95_high
    assert "p95=" in str(s) and set(s.as_dict()) >= {"p50", "p95", "p99", "p95_low", "p95_high"}
    assert latency.ratio(x / 2, x) == pytest.approx(0.5)
    np.testing.assert_allclose(latency.as_ms([0.001, 0.25]), [1.0, 250.0])


def test_ecdf_is_sorted_and_ends_at_one():
    values, fractions = latency.ecdf([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(values, [1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(fractions, [0.25, 0.5, 0.75, 1.0])
