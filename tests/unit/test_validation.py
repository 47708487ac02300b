"""course.mlops.validation: planted corruptions that know what they broke, report scoring, label noise, sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaErrors

from course.mlops.validation import (
    KINDS,
    Violation,
    assign_sources,
    corrupt,
    flip_labels,
    normalize_row,
    rule_kind,
    score_report,
)

pytestmark = pytest.mark.unit

NUMERIC = {"age": ("int64", 17, 100), "rate": ("float64", 0.0, 10.0), "calls": ("int64", 1, 50)}
CATEGORIES = {"job": ["admin.", "services", "student"], "contact": ["cellular", "telephone"]}


def clean_batch(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(17, 101, n),
            "rate": np.round(rng.uniform(0, 10, n), 3),
            "calls": rng.integers(1, 51, n),
            "job": rng.choice(CATEGORIES["job"], n),
            "contact": rng.choice(CATEGORIES["contact"], n),
        },
        index=np.arange(1000, 1000 + n),
    )


def schema() -> pa.DataFrameSchema:
    columns = {name: pa.Column(dtype, pa.Check.in_range(lo, hi)) for name, (dtype, lo, hi) in NUMERIC.items()}
    columns |= {name: pa.Column(str, pa.Check.isin(values)) for name, values in CATEGORIES.items()}
    return pa.DataFrameSchema(
        columns, checks=[pa.Check(lambda df: ~df.duplicated(), name="no_duplicate_rows")], strict=True
    )


def report_of(batch: pd.DataFrame) -> pd.DataFrame:
    """A minimal validator: pandera's lazy failure cases as (row, column, rule) lines."""
    try:
        schema().validate(batch, lazy=True)
    except SchemaErrors as err:
        lines = []
        for case in err.failure_cases.itertuples(index=False):
            column = case.failure_case if case.check.startswith("column_in") else case.column
            if case.schema_context == "DataFrameSchema" and not pd.isna(case.index):
                column = None
            lines.append((case.index, column, case.check))
        return pd.DataFrame(lines, columns=["row", "column", "rule"])
    return pd.DataFrame(columns=["row", "column", "rule"])


def test_rule_kind_strips_arguments_and_merges_synonyms() -> None:
    assert rule_kind("in_range(17, 100)") == "in_range"
    assert rule_kind("greater_than_or_equal_to(0)") == "in_range", "any range check counts as a range rule"
    assert rule_kind("isin(['a', 'b'])") == "isin"
    assert rule_kind("dtype('int64')") == rule_kind("coerce_dtype('int64')") == "dtype"
    assert rule_kind("not_nullable") == "not_nullable"
    assert rule_kind("no_duplicate_rows") == "no_duplicate_rows", "a custom check keeps its name"


def test_normalize_row_reads_none_nan_and_float_labels_alike() -> None:
    assert normalize_row(None) is None and normalize_row(np.nan) is None and normalize_row(pd.NA) is None
    assert normalize_row(3.0) == 3 and isinstance(normalize_row(np.int64(3)), int)
    assert normalize_row("r7") == "r7"
    assert Violation(3, "age", "in_range").matches(3.0, "age", "in_range(17, 100)")
    assert Violation(None, "age", "dtype").matches(np.nan, "age", "dtype('int64')")
    assert not Violation(3, "age", "in_range").matches(4, "age", "in_range(17, 100)")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_reported_where_it_was_planted_and_nowhere_else(kind: str) -> None:
    batch = clean_batch()
    assert report_of(batch).empty, "the clean batch must pass the contract"
    corrupted, planted = corrupt(batch, [kind, kind], NUMERIC, CATEGORIES, seed=3)
    assert len(planted) == 2 and all(v.rule == KINDS[kind] for v in planted)
    assert len({v.row for v in planted if v.row is not None} | {v.column for v in planted if v.column}) >= 2, (
        "each planted violation has a row or a column of its own"
    )
    score = score_report(report_of(corrupted), planted)
    assert score.recall == 1.0 and not score.missed, score
    assert not score.innocent_rows, f"rows blamed that nothing corrupted: {score.innocent_rows}"
    assert batch.equals(clean_batch()), "corrupt works on a copy"


def test_mixed_corruptions_stay_independent() -> None:
    for seed in range(20):
        kinds = [str(k) for k in np.random.default_rng(seed).choice(sorted(KINDS), size=3)]
        corrupted, planted = corrupt(clean_batch(seed=seed), kinds, NUMERIC, CATEGORIES, seed=seed)
        score = score_report(report_of(corrupted), planted)
        assert score.recall == 1.0 and not score.innocent_rows, (kinds, score)


def test_duplicates_get_new_labels_and_only_the_copy_is_the_violation() -> None:
    batch = clean_batch()
    corrupted, planted = corrupt(batch, ["duplicate_row"], NUMERIC, CATEGORIES, seed=1)
    (violation,) = planted
    assert violation.row == 1060 and violation.column is None and len(corrupted) == len(batch) + 1
    assert corrupted.duplicated().sum() == 1 and corrupted.duplicated().loc[1060]


def test_corrupt_refuses_unknown_kinds_and_too_many_plantings() -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        corrupt(clean_batch(), ["typo"], NUMERIC, CATEGORIES)
    with pytest.raises(ValueError, match="no column left"):
        corrupt(clean_batch(), ["wrong_dtype"] * 4, NUMERIC, CATEGORIES)


def test_score_report_counts_missed_violations_and_blamed_clean_rows() -> None:
    planted = [Violation(1, "age", "in_range"), Violation(None, "rate", "dtype"), Violation(5, None, "dup")]
    report = pd.DataFrame(
        {"row": [1.0, np.nan, 9], "column": ["age", "rate", "job"], "rule": ["in_range(0, 1)", "dtype('x')", "isin"]}
    )
    score = score_report(report, planted)
    assert score.named == planted[:2] and score.missed == [planted[2]] and score.recall == pytest.approx(2 / 3)
    assert score.innocent_rows == [9]
    assert score_report(report.iloc[:0], []).recall == 1.0
    with pytest.raises(ValueError, match="columns row, column and rule"):
        score_report(report.drop(columns=["rule"]), planted)


def test_flip_labels_flips_exactly_the_share_of_the_chosen_rows() -> None:
    y = pd.Series(np.r_[np.zeros(900, int), np.ones(100, int)], index=np.arange(5000, 6000))
    rows = y.index[:400]
    noisy, flipped = flip_labels(y, rows, 0.05, seed=2)
    assert len(flipped) == 20 and set(flipped) <= set(rows)
    assert (noisy != y).sum() == 20 and (noisy.loc[flipped] == 1 - y.loc[flipped]).all()
    again, flipped_again = flip_labels(y, rows, 0.05, seed=2)
    assert again.equals(noisy) and flipped_again.equals(flipped), "the same seed flips the same rows"
    assert y.sum() == 100, "the labels given are not modified"
    with pytest.raises(ValueError):
        flip_labels(y, rows, 1.5)
    with pytest.raises(ValueError, match="0/1"):
        flip_labels(y.map({0: "no", 1: "yes"}), rows, 0.1)


def test_assign_sources_follows_the_mix_of_each_key() -> None:
    keys = pd.Series(["cell"] * 6000 + ["phone"] * 4000, index=np.arange(10_000) * 3)
    mix = {"cell": {"a": 0.75, "b": 0.25, "c": 0.0}, "phone": {"a": 0.0, "b": 0.5, "c": 0.5}}
    sources = assign_sources(keys, mix, seed=0)
    assert sources.index.equals(keys.index) and set(sources) == {"a", "b", "c"}
    shares = pd.crosstab(keys, sources, normalize="index")
    assert abs(shares.loc["cell", "a"] - 0.75) < 0.03 and shares.loc["phone", "a"] == 0
    assert abs(shares.loc["phone", "c"] - 0.5) < 0.03 and shares.loc["cell", "c"] == 0
    assert assign_sources(keys, mix, seed=0).equals(sources), "seeded"
    with pytest.raises(ValueError, match="no mix"):
        assign_sources(keys, {"cell": {"a": 1.0}})
