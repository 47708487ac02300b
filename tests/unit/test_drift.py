"""course.mlops.drift: PSI, the per-feature tests, the domain classifier, the alert rule, the metrics, Evidently."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from course.mlops import drift

pytestmark = pytest.mark.unit


# --- PSI ----------------------------------------------------------------------------------------------------------


def test_psi_of_a_hand_computed_case_with_empty_bins():
    # ten reference bins of 0.1; the current sample fills five of them with 0.2, the other five count as eps
    expected = 5 * 0.1 * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert drift.psi(np.arange(100.0), np.arange(50.0)) == pytest.approx(expected, abs=1e-12)


def test_psi_bins_come_from_the_reference_and_outer_bins_are_open():
    reference = np.arange(100.0)
    assert drift.psi(reference, reference) == 0.0
    beyond = drift.psi(reference, reference + 1000)  # everything in the last, open bin
    assert math.isfinite(beyond) and beyond == pytest.approx(drift.psi(reference, np.full(7, 1e9)))
    # quantile bins of the current window would give every bin about 10% of it: a different (wrong) number
    assert drift.psi(reference, np.arange(50.0)) > 3


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert drift.psi(reference, rng.normal(size=2000)) < 0.02
    assert drift.psi(reference, rng.normal(1.0, 1.0, size=2000)) > 0.25


def test_quantile_edges_merge_ties_and_reject_nonsense():
    assert drift.quantile_edges([0] * 95 + [1] * 5).tolist() == [0.0]  # a zero-inflated feature: one edge
    assert len(drift.quantile_edges(np.arange(1000), bins=4)) == 3
    with pytest.raises(ValueError):
        drift.quantile_edges([1, 2, 3], bins=1)
    with pytest.raises(ValueError):
        drift.quantile_edges([])


def test_categorical_psi_is_symmetric_and_counts_new_categories():
    a, b = ["x"] * 50 + ["y"] * 50, ["x"] * 80 + ["y"] * 20
    expected = 0.3 * math.log(0.8 / 0.5) - 0.3 * math.log(0.2 / 0.5)
    assert drift.psi_categorical(a, b) == pytest.approx(expected, abs=1e-12)
    assert drift.psi_categorical(a, b) == pytest.approx(drift.psi_categorical(b, a), abs=1e-12)
    assert drift.psi_categorical(["x", "y"] * 10, ["x", "y", "z", "z"] * 5) > 0.25
    assert drift.psi_categorical([1, 2], ["1", "2"]) == 0.0


# --- the tests and their table ------------------------------------------------------------------------------------


def test_category_table_pools_rare_and_unseen_categories():
    reference = ["a"] * 600 + ["b"] * 390 + ["c"] * 10  # c holds exactly 1%: a bin of its own
    table = drift.category_table(reference, ["a", "b", "new", "new"], min_share=0.01)
    assert list(table.columns) == ["a", "b", "c"]  # OTHER (only 'new', 0% of the reference) joins the rarest bin
    assert table.loc["current"].tolist() == [1, 1, 2] and table.loc["reference"].tolist() == [600, 390, 10]
    common = drift.category_table(["a"] * 500 + ["b"] * 470 + ["r1"] * 15 + ["r2"] * 15, ["a", "r1"], min_share=0.02)
    assert list(common.columns) == ["a", "b", drift.OTHER]  # r1 and r2 are rare alone, 3% together
    assert common.loc["reference"].tolist() == [500, 470, 30] and common.loc["current"].tolist() == [1, 0, 1]


def test_category_table_keeps_a_new_category_visible_when_only_one_bin_remains():
    table = drift.category_table(["a"] * 100, ["a", "b"])
    assert list(table.columns) == ["a", drift.OTHER] and table.loc["current"].tolist() == [1, 1]
    assert list(drift.category_table(["a"] * 100, ["a", "a"]).columns) == ["a"]  # empty OTHER dropped


def test_feature_pvalues_use_ks_and_pooled_chi_square_in_order():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(size=3000), "k": rng.choice(["p", "q", "r"], 3000)})
    current = pd.DataFrame({"x": rng.normal(0.3, 1, size=300), "k": rng.choice(["p", "q", "r"], 300)})
    got = drift.feature_pvalues(reference, current, ["x"], ["k"])
    assert list(got.index) == ["x", "k"]
    assert got["x"] == pytest.approx(stats.ks_2samp(reference["x"], current["x"], method="asymp").pvalue)
    table = drift.category_table(reference["k"], current["k"]).to_numpy()
    assert got["k"] == pytest.approx(stats.chi2_contingency(table).pvalue)
    assert drift.chi2_pvalue(["a"] * 10, ["a"] * 3) == 1.0


def test_pooling_keeps_a_rare_category_from_looking_like_drift():
    reference = ["common"] * 19000 + ["usual"] * 997 + ["rare"] * 3
    current = ["common"] * 378 + ["usual"] * 20 + ["rare"] * 2
    assert drift.chi2_pvalue(reference, current) > 0.01
    raw = pd.DataFrame({"r": pd.Series(reference).value_counts(), "c": pd.Series(current).value_counts()}).T
    assert stats.chi2_contingency(raw.to_numpy()).pvalue < 1e-6  # what the unpooled table would claim


def test_bonferroni_divides_alpha_by_the_number_of_tests():
    pvalues = pd.Series([0.01, 0.03] + [0.5] * 18, index=[f"f{i}" for i in range(20)])
    assert drift.bonferroni(pvalues, 0.05) == []
    assert drift.bonferroni(pd.Series({"a": 1e-5, "b": 0.3, "c": 1e-9}), 0.01) == ["c", "a"]
    assert drift.bonferroni(pd.Series({"a": 0.005, "b": 0.9}), 0.01) == []  # not below 0.01 / 2
    assert drift.bonferroni(pd.Series(dtype=float)) == []
    with pytest.raises(ValueError):
        drift.bonferroni(pvalues, 1.5)


# --- the domain classifier, the alert -----------------------------------------------------------------------------


def test_domain_auc_is_near_half_for_one_distribution_and_high_for_a_shift():
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(2000, 20)), rng.normal(size=(200, 20))
    assert 0.4 < drift.domain_auc(reference, current) < 0.6
    assert drift.domain_auc(reference, current) == drift.domain_auc(reference, current)  # seeded
    current[:, 0] += 1.5
    assert drift.domain_auc(reference, current) > 0.7
    with pytest.raises(ValueError):
        drift.domain_auc(reference, current[:2])


def test_k_of_m_waits_for_persistent_flags():
    rule = drift.KOfM(2, 3)
    flags = [False, True, False, False, True, True, False, False, False]
    assert [rule.update(f) for f in flags] == [False, False, False, False, False, True, True, False, False]
    every = drift.KOfM(1, 1)
    assert [every.update(f) for f in [True, False, True]] == [True, False, True]
    for k, m in ((0, 1), (3, 2)):
        with pytest.raises(ValueError):
            drift.KOfM(k, m)


# --- once labels arrive -------------------------------------------------------------------------------------------


def test_normalized_entropy_is_one_for_the_base_rate_and_does_not_move_with_it():
    for rate in (0.07, 0.5):
        y = (np.arange(1000) < rate * 1000).astype(int)
        assert drift.normalized_entropy(y, np.full(1000, rate)) == pytest.approx(1.0)
    y = np.array([0, 1] * 50)
    assert drift.normalized_entropy(y, np.where(y == 1, 0.99, 0.01)) < 0.05
    assert drift.normalized_entropy(y, np.where(y == 1, 0.01, 0.99)) > 5
    assert math.isnan(drift.normalized_entropy([1, 1], [0.5, 0.5]))
    assert drift.normalized_entropy([0, 1], [0.0, 1.0]) < 1e-10  # clipped, not log(0)


def test_calibration_ratio_is_expected_over_observed():
    assert drift.calibration_ratio([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(1.0)
    assert drift.calibration_ratio([1, 1, 0, 0], [0.1, 0.1, 0.1, 0.1]) == pytest.approx(0.2)
    assert math.isnan(drift.calibration_ratio([0, 0], [0.1, 0.2]))


# --- Evidently ----------------------------------------------------------------------------------------------------


def test_evidently_draws_an_offline_report_quietly(tmp_path):
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(size=1500), "k": rng.choice(["p", "q"], 1500)})
    current = pd.DataFrame({"x": rng.normal(2.0, 1, size=300), "k": rng.choice(["p", "q"], 300)})
    html = tmp_path / "report" / "drift.html"
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        summary = drift.evidently_drift(reference, current, ["x"], ["k"], html=html)
    assert stderr.getvalue() == "", f"Evidently wrote to stderr: {stderr.getvalue()[:300]!r}"
    assert list(summary.index) == ["x", "k"] and {"method", "score", "threshold", "drifted"} <= set(summary.columns)
    assert bool(summary.loc["x", "drifted"]) and not bool(summary.loc["k", "drifted"])
    page = html.read_text()
    assert len(page) > 100_000 and '<script src="http' not in page  # the scripts are inline: it opens offline
