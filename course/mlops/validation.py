"""Test data for data validation: corrupted batches that know what they broke, label noise, data sources.

A validator is only as good as the corruptions it was tried on. `corrupt` plants violations of a data contract
into a copy of a clean batch and returns, with the corrupted batch, the list of `Violation`s (row, column, rule)
a correct validator must report; `score_report` compares a validator's report with that list, so a test can say
"3 of 17 planted violations were not named" instead of "the batch was rejected". `flip_labels` plants label
noise in chosen rows, and `assign_sources` splits a table into simulated data sources (call centres, feeds,
partners) whose mix depends on a column, so that sources differ the way real ones do.

A contract, as the labs write it:

* `numeric`: column -> (dtype, lowest allowed, highest allowed), e.g. `{"age": ("int64", 17, 100)}`;
* `categories`: column -> the allowed values, e.g. `{"contact": ["cellular", "telephone"]}`.

Rule names are pandera's check names (`in_range(17, 100)`, `isin([...])`, `not_nullable`, `dtype('int64')`,
`column_in_dataframe`, `column_in_schema`) or the name given to a custom check (`no_duplicate_rows`);
`rule_kind` strips the arguments, so a report and a planted violation compare by the kind of rule.

Lab 16 builds the schema and the validator itself; these helpers make its test batches, and later labs (the
retraining pipeline) reuse them to test their own validation step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NumericContract = Mapping[str, tuple[str, float, float]]
Categories = Mapping[str, Sequence[str]]

# Kinds of corruption `corrupt` can plant, and the rule each one breaks.
KINDS: dict[str, str] = {
    "out_of_range": "in_range",  # a number outside the contract's range
    "unknown_category": "isin",  # a category the contract does not list (a typo, another encoding)
    "null": "not_nullable",  # a missing value
    "string_in_numeric": "dtype",  # one cell of a numeric column arrives as text ("4,857")
    "wrong_dtype": "dtype",  # a whole numeric column arrives as text
    "duplicate_row": "no_duplicate_rows",  # a row sent twice
    "missing_column": "column_in_dataframe",  # a column the contract requires is absent
    "extra_column": "column_in_schema",  # a column the contract does not know
}

# pandera's range checks, all reported as one kind: a contract range may be written with any of them.
_RANGE_CHECKS = {
    "in_range",
    "between",
    "greater_than",
    "greater_than_or_equal_to",
    "less_than",
    "less_than_or_equal_to",
    "ge",
    "gt",
    "le",
    "lt",
}
_EXTRA_NAMES = ("customer_id", "branch_code", "loaded_at")
_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")


def rule_kind(check: object) -> str:
    """The kind of a pandera check name: `in_range(17, 100)` -> `in_range`, `coerce_dtype('int64')` -> `dtype`.

    Reports name rules with their arguments, which depend on the contract; tests compare kinds.
    """
    match = _NAME.match(str(check))
    name = match.group(1) if match else str(check).strip()
    if name in _RANGE_CHECKS:
        return "in_range"
    if name in ("dtype", "coerce_dtype"):
        return "dtype"
    if name in ("isin", "notin"):
        return "isin"
    return name


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def normalize_row(value: object) -> Hashable | None:
    """A row label as a report may hold it: None for 'no row', plain Python ints for integer labels.

    A column that mixes None with integers comes back from pandas as floats (3.0) or NaN; both mean the same
    labels as 3 and None.
    """
    if _missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Violation:
    """One broken rule: the row's index label (None: a whole column or table), the column (None: a whole row)."""

    row: Hashable | None
    column: str | None
    rule: str  # a rule kind, as `rule_kind` returns it

    def matches(self, row: object, column: object, rule: object) -> bool:
        col = None if _missing(column) else str(column)
        return normalize_row(row) == self.row and col == self.column and rule_kind(rule) == self.rule


def _unknown_value(value: str, allowed: Iterable[str], rng: np.random.Generator) -> str:
    """A plausible category the contract does not allow: another spelling of a real one, or a placeholder."""
    allowed = set(allowed)
    options = [value.upper(), value + " ", value.replace(".", "_"), value.replace("-", " "), "n/a", "N/A", "?"]
    options = [o for o in dict.fromkeys(options) if o not in allowed]
    return str(options[int(rng.integers(len(options)))])


def _outside(dtype: str, low: float, high: float, rng: np.random.Generator) -> Any:
    """A value just outside [low, high], of the column's type."""
    span = max(1.0, (high - low) * 0.1)
    above = bool(rng.integers(2))
    if np.issubdtype(np.dtype(dtype), np.integer):
        step = int(rng.integers(1, max(2, int(span))))
        return int(high) + step if above else int(low) - step
    step = float(rng.uniform(0.01, 1.0)) * span
    return float(high) + step if above else float(low) - step


def _as_text(value: Any, rng: np.random.Generator) -> str:
    """A number as a person or another system would type it: a decimal comma, quotes, a placeholder.

    Never one that a cast would read back as the number (" 41" or "41.0"): pandera names the rows of a text
    column that fail to convert, and a cell that converts cleanly would leave it nothing to name.
    """
    if isinstance(value, float | np.floating):
        return str(rng.choice([f"{float(value):.3f}".replace(".", ","), "n/a", f"{float(value)}%"]))
    return str(rng.choice([f"'{value}'", f"{value}+", "unknown", "n/a"]))


def corrupt(
    batch: pd.DataFrame,
    kinds: Sequence[str],
    numeric: NumericContract,
    categories: Categories,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[Violation]]:
    """A corrupted copy of a clean batch, and the violations (row, column, rule kind) a validator must report.

    `kinds` lists one entry per violation to plant (repeat a kind to plant it several times), from `KINDS`.
    Every violation gets a row and a column of its own, so no two plantings interact: a validator that reports
    them all, and no other row, is right. Duplicated rows are appended with new index labels (the largest
    integer label + 1, + 2...): the copy is the violation, the original is innocent.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds of corruption {unknown}; known: {sorted(KINDS)}")
    rng = np.random.default_rng(seed)
    out = batch.copy()
    planted: list[Violation] = []
    numeric_cols = [c for c in numeric if c in out.columns]
    category_cols = [c for c in categories if c in out.columns]
    free_cols = set(numeric_cols) | set(category_cols)
    free_rows = list(out.index)
    rng.shuffle(free_rows)

    def take_column(pool: Sequence[str], kind: str) -> str:
        choices = [c for c in pool if c in free_cols]
        if not choices:
            raise ValueError(f"no column left to plant {kind!r}: plant fewer violations or pass a wider batch")
        column = choices[int(rng.integers(len(choices)))]
        free_cols.discard(column)
        return column

    def take_row(kind: str) -> Hashable:
        if not free_rows:
            raise ValueError(f"no row left to plant {kind!r}: the batch is too small")
        return free_rows.pop()

    # Whole-column changes first, on columns nothing else touches; duplicated rows last, so that the copy is
    # still equal to its original whatever was added or changed elsewhere.
    for kind in kinds:
        if kind == "missing_column":
            # never a column whose absence would make two rows equal: that would plant a duplicate nobody asked for
            safe = [c for c in free_cols if not out.drop(columns=[c]).duplicated().any()]
            column = take_column(sorted(safe, key=(numeric_cols + category_cols).index), kind)
            out = out.drop(columns=[column])
            planted.append(Violation(None, column, KINDS[kind]))
        elif kind == "extra_column":
            taken = [v.column for v in planted if v.rule == KINDS[kind]]
            name = next(n for n in (*_EXTRA_NAMES, *(f"extra_{i}" for i in range(len(kinds)))) if n not in taken)
            out[name] = rng.integers(0, 1000, len(out))
            planted.append(Violation(None, name, KINDS[kind]))
        elif kind == "wrong_dtype":
            column = take_column(numeric_cols, kind)
            if pd.api.types.is_integer_dtype(out[column]):
                out[column] = out[column].astype("float64")  # 41 -> 41.0: an export that went through a float
            else:
                out[column] = out[column].astype(str)  # 4.857 -> "4.857": a CSV read without a dtype
            planted.append(Violation(None, column, KINDS[kind]))
    for kind in kinds:
        if kind == "out_of_range":
            column, row = take_column(numeric_cols, kind), take_row(kind)
            dtype, low, high = numeric[column]
            out.loc[row, column] = _outside(dtype, low, high, rng)
        elif kind == "unknown_category":
            column, row = take_column(category_cols, kind), take_row(kind)
            out.loc[row, column] = _unknown_value(str(out.at[row, column]), categories[column], rng)
        elif kind == "null":
            column, row = take_column(numeric_cols + category_cols, kind), take_row(kind)
            if pd.api.types.is_integer_dtype(out[column]):
                out[column] = out[column].astype("float64")  # what pandas does to an int column with a gap
            out.loc[row, column] = np.nan
        elif kind == "string_in_numeric":
            column, row = take_column(numeric_cols, kind), take_row(kind)
            text = _as_text(out.at[row, column], rng)
            out[column] = out[column].astype(object)
            out.loc[row, column] = text
        else:
            continue
        planted.append(Violation(normalize_row(row), column, KINDS[kind]))
    for kind in kinds:
        if kind == "duplicate_row":
            source = take_row(kind)
            labels = [x for x in out.index if isinstance(x, int | np.integer)]
            new_label = int(max(labels, default=-1)) + 1
            out = pd.concat([out, out.loc[[source]].set_axis([new_label])])
            planted.append(Violation(new_label, None, KINDS[kind]))
    return out, planted


@dataclass(frozen=True)
class ReportScore:
    """How a validation report compares with the planted violations."""

    planted: int
    named: list[Violation] = field(default_factory=list)
    missed: list[Violation] = field(default_factory=list)
    innocent_rows: list[Hashable] = field(default_factory=list)  # rows the report names that nothing corrupted

    @property
    def recall(self) -> float:
        return len(self.named) / self.planted if self.planted else 1.0


def score_report(report: pd.DataFrame, planted: Sequence[Violation]) -> ReportScore:
    """Which planted violations a report (columns row, column, rule) names exactly, and which clean rows it blames.

    A violation is named when one line of the report has its row, its column and a rule of its kind. A report
    may say more about a planted row (a missing value in an integer column also breaks its dtype), but a row
    that no violation touched must not appear: blaming clean rows is how a validator loses its users' trust.
    """
    missing = {"row", "column", "rule"} - set(report.columns)
    if missing:
        raise ValueError(f"a report needs the columns row, column and rule; missing {sorted(missing)}")
    lines = list(zip(report["row"], report["column"], report["rule"], strict=True))
    named = [v for v in planted if any(v.matches(*line) for line in lines)]
    touched = {v.row for v in planted if v.row is not None}
    blamed = {normalize_row(row) for row, _, _ in lines} - {None}
    innocent = sorted(blamed - touched, key=str)
    return ReportScore(len(planted), named, [v for v in planted if v not in named], innocent)


def flip_labels(y: pd.Series, rows: Sequence[Hashable], share: float, seed: int = 0) -> tuple[pd.Series, pd.Index]:
    """A copy of the 0/1 labels `y` with round(share * len(rows)) of `rows` flipped, and the flipped labels' index.

    This is symmetric noise: the flipped rows are drawn at random whatever their label, as a system that records
    outcomes wrongly at random would do. With rare positives most flips turn a 0 into a 1.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], not {share}")
    values = set(pd.unique(y))
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got {sorted(values, key=str)[:5]}")
    rows = list(rows)
    rng = np.random.default_rng(seed)
    chosen = pd.Index([rows[i] for i in rng.choice(len(rows), size=round(share * len(rows)), replace=False)])
    noisy = y.copy()
    noisy.loc[chosen] = 1 - noisy.loc[chosen]
    return noisy, chosen


def assign_sources(keys: pd.Series, mix: Mapping[Any, Mapping[str, float]], seed: int = 0) -> pd.Series:
    """A simulated data source for every row: drawn from `mix[key]` (source -> probability) for the row's key.

    Real sources differ in what they see (a call centre that phones landlines, a partner that sells to
    students), so a source's mix of rows depends on a column; the key column and the mix say how.
    """
    unknown = set(pd.unique(keys)) - set(mix)
    if unknown:
        raise ValueError(f"no mix for the keys {sorted(unknown, key=str)}")
    rng = np.random.default_rng(seed)
    out = pd.Series(pd.NA, index=keys.index, dtype="object", name="source")
    for key, probabilities in mix.items():
        rows = keys.index[keys.to_numpy() == key]
        names = list(probabilities)
        weights = np.array([probabilities[n] for n in names], dtype=float)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"the mix for {key!r} needs non-negative weights that add up to more than 0")
        out.loc[rows] = rng.choice(names, size=len(rows), p=weights / weights.sum())
    return out.astype(str)
