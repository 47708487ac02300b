"""course.serving.experiments: sticky splitting, two-proportion statistics and canary guardrails."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from course.serving.experiments import (
    ArmStats,
    Guardrails,
    ab_verdict,
    bucket,
    difference_ci,
    guardrail_violations,
    in_treatment,
    sample_size_per_arm,
    two_proportion_ztest,
)

pytestmark = pytest.mark.unit


# --- traffic splitting ------------------------------------------------------------------------------------------


def test_bucket_is_sha256_based_and_the_same_in_another_process() -> None:
    ids = [f"user-{i}" for i in range(5)]
    here = [bucket(u, "exp") for u in ids]
    code = "from course.serving.experiments import bucket; print([bucket(f'user-{i}', 'exp') for i in range(5)])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert there.stdout.strip() == str(here), "a user's bucket must not depend on the process (no hash())"
    # pinned: sha256("exp:user-0"), first 8 bytes big-endian, mod 10_000
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"exp:user-0").digest()[:8], "big") % 10_000
    assert here[0] == expected


def test_buckets_are_roughly_uniform_and_salts_are_independent() -> None:
    counts = [0] * 10
    for i in range(20_000):
        counts[bucket(str(i), "a", 10)] += 1
    assert min(counts) > 1_800 and max(counts) < 2_200, counts
    same = sum(in_treatment(str(i), 0.5, "a") == in_treatment(str(i), 0.5, "b") for i in range(4_000))
    assert 1_800 < same < 2_200, "two salts should split users independently (about half agree)"


def test_ramping_the_share_only_adds_users() -> None:
    ids = [f"u{i}" for i in range(3_000)]
    at5 = {u for u in ids if in_treatment(u, 0.05, "ramp")}
    at25 = {u for u in ids if in_treatment(u, 0.25, "ramp")}
    assert at5 <= at25, "a user in at 5% must stay in at 25%"
    assert 90 < len(at5) < 210 and 620 < len(at25) < 880
    assert not any(in_treatment(u, 0.0, "ramp") for u in ids) and all(in_treatment(u, 1.0, "ramp") for u in ids)
    with pytest.raises(ValueError):
        in_treatment("u", 1.5, "ramp")


# --- A/B statistics -----------------------------------------------------------------------------------------------


def test_sample_size_matches_the_textbook_and_grows_with_power() -> None:
    n = sample_size_per_arm(0.10, 0.02, alpha=0.05, power=0.8)
    assert n == 3841, n  # (1.96 sqrt(2 .11 .89) + .8416 sqrt(.09 + .1056))^2 / .02^2 = 3840.2
    # the simpler (z_a + z_b)^2 (p0 q0 + p1 q1) / mde^2 agrees to within a percent
    assert abs(n - (1.959964 + 0.841621) ** 2 * (0.09 + 0.1056) / 0.0004) / n < 0.01
    assert sample_size_per_arm(0.10, 0.02, power=0.9) > n > sample_size_per_arm(0.10, 0.02, power=0.5)
    assert sample_size_per_arm(0.10, 0.01) > 3.5 * n, "halving the effect needs about four times the users"
    assert sample_size_per_arm(0.10, -0.02) > 0
    with pytest.raises(ValueError):
        sample_size_per_arm(0.10, 0.0)


def test_ztest_is_pooled_and_two_sided() -> None:
    z, p = two_proportion_ztest(5, 100, 40, 200)
    pooled = 45 / 300
    z_ref = (0.20 - 0.05) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 200))
    assert z == pytest.approx(z_ref, rel=1e-12)
    assert p == pytest.approx(math.erfc(z_ref / math.sqrt(2)), rel=1e-9)
    z_rev, p_rev = two_proportion_ztest(40, 200, 5, 100)
    assert z_rev == pytest.approx(-z) and p_rev == pytest.approx(p), "swapping the arms flips z, keeps p"
    z0, p0 = two_proportion_ztest(100, 1000, 100, 1000)
    assert z0 == 0 and p0 == pytest.approx(1.0)
    z_known, p_known = two_proportion_ztest(500, 5000, 560, 5000)  # 10% vs 11.2%: just not significant
    assert z_known == pytest.approx(1.94908, abs=1e-4) and p_known == pytest.approx(0.05129, abs=1e-4)
    assert two_proportion_ztest(0, 50, 0, 60) == (0.0, 1.0)


def test_interval_and_verdict() -> None:
    lo, hi = difference_ci(1000, 10_000, 1300, 10_000)
    assert lo < 0.03 < hi and lo > 0 and hi - lo == pytest.approx(2 * 1.959964 * math.sqrt(0.09 / 1e4 + 0.1131 / 1e4))
    assert ab_verdict(1000, 10_000, 1300, 10_000) == "ship"
    assert ab_verdict(1300, 10_000, 1000, 10_000) == "worse"
    assert ab_verdict(1000, 10_000, 1020, 10_000) == "no difference"


# --- canary guardrails --------------------------------------------------------------------------------------------

CHAMPION = ArmStats(requests=400, errors=0, p95_ms=1.0, labelled=120, correct=116)


def _with(**changes: float) -> ArmStats:
    fields = {"requests": 400, "errors": 0, "p95_ms": 1.0, "labelled": 120, "correct": 116, **changes}
    return ArmStats(**fields)  # type: ignore[arg-type]


def test_an_equal_challenger_passes_and_each_guardrail_fires_on_its_own() -> None:
    g = Guardrails()
    assert guardrail_violations(CHAMPION, _with(), g) == []
    (errors,) = guardrail_violations(CHAMPION, _with(errors=20), g)
    (latency,) = guardrail_violations(CHAMPION, _with(p95_ms=60.0), g)
    (accuracy,) = guardrail_violations(CHAMPION, _with(correct=108), g)
    assert errors.startswith("error rate") and latency.startswith("p95 latency") and accuracy.startswith("accuracy")
    assert len(guardrail_violations(CHAMPION, _with(errors=20, p95_ms=60.0, correct=100), g)) == 3


def test_tolerances_are_strict_and_small_samples_are_not_judged() -> None:
    g = Guardrails(max_error_rate_increase=0.01, max_p95_increase_ms=20.0, max_accuracy_drop=0.026)
    assert guardrail_violations(CHAMPION, _with(errors=4, p95_ms=21.0, correct=113), g) == []  # exactly at limits
    assert guardrail_violations(CHAMPION, _with(requests=10, errors=5, p95_ms=90.0), g) == []
    assert guardrail_violations(CHAMPION, _with(labelled=10, correct=2), g) == []
    assert _with(labelled=0, correct=0).accuracy != _with(labelled=0, correct=0).accuracy  # NaN
    assert _with(errors=8).error_rate == pytest.approx(0.02)
