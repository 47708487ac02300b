"""Online experiments: sticky traffic splitting, A/B-test statistics and canary guardrails.

Lab 13 has learners write each of these themselves; this is the reference that later
labs import, so that every lab splits traffic the same way and reaches the same
decision from the same numbers. Pure Python (normal quantiles from
`statistics.NormalDist`, tails from `math.erfc`), so it needs nothing beyond the
standard library and works the same inside a server, a test or a notebook.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()

# ---------------------------------------------------------------------------------------------------------------
# Traffic splitting
# ---------------------------------------------------------------------------------------------------------------


def bucket(unit_id: str, salt: str, n_buckets: int = 10_000) -> int:
    """The bucket in [0, n_buckets) of a user (or request) id: the same answer in every process, forever.

    sha256, not the built-in hash(): Python salts str hashes per process (PYTHONHASHSEED), so
    hash() would move users between variants each time a server restarts or scales out. The salt
    (one per experiment) makes experiments independent: a user's bucket in one says nothing about
    their bucket in another, so the same users are not always the guinea pigs.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be positive, not {n_buckets}")
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_buckets


def in_treatment(unit_id: str, share: float, salt: str, n_buckets: int = 10_000) -> bool:
    """True when this unit gets the new variant at this traffic share (0 <= share <= 1).

    A unit is in when its bucket is below share * n_buckets, so ramping the share up (5% -> 25%
    -> 50%) only ever adds units: a user who saw the challenger at 5% keeps seeing it at 25%.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], not {share}")
    return bucket(unit_id, salt, n_buckets) < round(share * n_buckets)


# ---------------------------------------------------------------------------------------------------------------
# A/B statistics: two proportions
# ---------------------------------------------------------------------------------------------------------------


def sample_size_per_arm(p0: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm for a two-sided two-proportion z-test to detect p0 -> p0 + mde.

    n = (z_{1-alpha/2} sqrt(2 pbar (1 - pbar)) + z_{power} sqrt(p0 q0 + p1 q1))^2 / mde^2 with
    pbar = (p0 + p1) / 2: the first term keeps false positives at alpha under the null (pooled
    variance), the second buys the power to see the effect under the alternative. Rounded up.
    """
    p1 = p0 + mde
    if not (0 < p0 < 1 and 0 < p1 < 1) or mde == 0:
        raise ValueError(f"need 0 < p0 < 1, 0 < p0 + mde < 1 and mde != 0; got p0={p0}, mde={mde}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must be in (0, 1); got alpha={alpha}, power={power}")
    z_alpha = _NORMAL.inv_cdf(1 - alpha / 2)
    z_power = _NORMAL.inv_cdf(power)
    pbar = (p0 + p1) / 2
    spread = z_alpha * math.sqrt(2 * pbar * (1 - pbar)) + z_power * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    return math.ceil((spread / mde) ** 2)


def two_proportion_ztest(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p-value) for H0: both arms convert at the same rate; z > 0 when B converts more.

    The standard error uses the pooled rate (x_a + x_b) / (n_a + n_b): under H0 there is one
    rate, and estimating it from both arms is what keeps the false-positive rate at alpha.
    """
    if min(n_a, n_b) <= 0 or not (0 <= x_a <= n_a and 0 <= x_b <= n_b):
        raise ValueError(f"need 0 <= x <= n and n > 0 in both arms; got {x_a}/{n_a} and {x_b}/{n_b}")
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:  # nobody (or everybody) converted in either arm: no evidence of a difference
        return 0.0, 1.0
    z = (x_b / n_b - x_a / n_a) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def difference_ci(x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided (1 - alpha) Wald interval for p_b - p_a.

    Unpooled on purpose: an interval describes the difference *as it is*, where the two rates
    differ, unlike the test, which asks how surprising the data would be if they did not.
    """
    p_a, p_b = x_a / n_a, x_b / n_b
    half = _NORMAL.inv_cdf(1 - alpha / 2) * math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return p_b - p_a - half, p_b - p_a + half


def ab_verdict(x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05) -> str:
    """'ship' (B significantly better), 'worse' (significantly worse) or 'no difference'."""
    z, p_value = two_proportion_ztest(x_a, n_a, x_b, n_b)
    if p_value >= alpha:
        return "no difference"
    return "ship" if z > 0 else "worse"


# ---------------------------------------------------------------------------------------------------------------
# Canary guardrails
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    """What one model did so far in a rollout: calls, failures, tail latency, labelled outcomes."""

    requests: int
    errors: int
    p95_ms: float
    labelled: int  # successful predictions whose true label has arrived
    correct: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else math.nan


@dataclass(frozen=True)
class Guardrails:
    """How much worse than the champion a challenger may look before the rollout stops.

    Absolute tolerances, and minimum sample sizes below which a metric is not judged yet:
    five requests with one failure is a 20% error rate and no evidence of anything.
    """

    max_error_rate_increase: float = 0.01
    max_p95_increase_ms: float = 20.0
    max_accuracy_drop: float = 0.03
    min_requests: int = 50
    min_labelled: int = 50


def guardrail_violations(champion: ArmStats, challenger: ArmStats, guardrails: Guardrails) -> list[str]:
    """Reasons to stop the rollout, empty when the challenger is within every tolerance.

    Each reason starts with the metric ('error rate', 'p95 latency', 'accuracy') so that a
    dashboard or a test can tell which guardrail fired. All three are checked: a model that
    never fails and answers fast can still be wrong more often.
    """
    g = guardrails
    reasons = []
    if min(champion.requests, challenger.requests) >= g.min_requests:
        if challenger.error_rate - champion.error_rate > g.max_error_rate_increase:
            reasons.append(
                f"error rate {challenger.error_rate:.3f} vs champion {champion.error_rate:.3f} "
                f"(allowed +{g.max_error_rate_increase:.3f})"
            )
        if challenger.p95_ms - champion.p95_ms > g.max_p95_increase_ms:
            reasons.append(
                f"p95 latency {challenger.p95_ms:.1f} ms vs champion {champion.p95_ms:.1f} ms "
                f"(allowed +{g.max_p95_increase_ms:.1f} ms)"
            )
    if min(champion.labelled, challenger.labelled) >= g.min_labelled:
        if champion.accuracy - challenger.accuracy > g.max_accuracy_drop:
            reasons.append(
                f"accuracy {challenger.accuracy:.3f} vs champion {champion.accuracy:.3f} "
                f"on labelled feedback (allowed -{g.max_accuracy_drop:.3f})"
            )
    return reasons
