"""Latency statistics: percentiles, how sure we are of them, and comparisons.

A service is judged on its tail: the p95 is the latency that one request in twenty
exceeds, and a user who loads a page that makes twenty calls meets it every time.
The mean hides the tail, and "mean + 2 sigma" is not a percentile (latencies are
skewed, never normal). Percentiles of a finite sample are estimates, so every figure
here can come with a distribution-free confidence interval: the order statistics
that bracket the true quantile with the asked-for confidence (scipy's
`quantile_test`, which needs no assumption about the shape of the distribution).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

QUANTILES = (50.0, 95.0, 99.0)


def as_ms(latencies_s: Iterable[float]) -> np.ndarray:
    """Seconds (what clocks give) to milliseconds (what people read), as a float array."""
    return np.fromiter(latencies_s, dtype=float) * 1e3


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0-100), interpolated between order statistics like numpy's default."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples: a percentile of nothing is undefined (did every request fail?)")
    if not 0 <= q <= 100:
        raise ValueError(f"q is a percentile between 0 and 100, not {q}")
    return float(np.percentile(x, q))


def percentile_ci(samples: Sequence[float] | np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the q-th percentile.

    With few samples the interval is wide, and for a p99 of 50 requests it is
    unbounded above (there is no sample beyond the 99th percentile): that is the
    honest answer, returned as `inf`, and the reason to send enough requests.
    """
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples: a percentile of nothing is undefined")
    result = stats.quantile_test(x, q=percentile(x, q), p=q / 100.0)
    ci = result.confidence_interval(confidence_level=confidence)
    return float(ci.low) if np.isfinite(ci.low) else -np.inf, float(ci.high) if np.isfinite(ci.high) else np.inf


@dataclass(frozen=True)
class Summary:
    """Percentiles of one run, in milliseconds, with the 95% interval of the p95."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    p95_low: float
    p95_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"n={self.n}  p50={self.p50:.2f} ms  p95={self.p95:.2f} ms "
            f"[{self.p95_low:.2f}, {self.p95_high:.2f}]  p99={self.p99:.2f} ms  max={self.max:.2f} ms"
        )


def summarize(latencies_ms: Sequence[float] | np.ndarray) -> Summary:
    """p50/p95/p99 (and the p95's confidence interval) of latencies already in milliseconds."""
    x = np.asarray(latencies_ms, dtype=float)
    low, high = percentile_ci(x, 95.0)
    p50, p95, p99 = (percentile(x, q) for q in QUANTILES)
    return Summary(
        n=int(x.size), mean=float(x.mean()), p50=p50, p95=p95, p99=p99, max=float(x.max()), p95_low=low, p95_high=high
    )


def ecdf(samples: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the fraction of samples at or below each: the curve a latency CDF plot draws."""
    x = np.sort(np.asarray(samples, dtype=float))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def ratio(candidate_ms: Sequence[float], baseline_ms: Sequence[float], q: float = 95.0) -> float:
    """candidate's q-th percentile over the baseline's: 0.5 means the tail was cut in half."""
    return percentile(candidate_ms, q) / percentile(baseline_ms, q)
