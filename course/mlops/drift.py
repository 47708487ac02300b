"""Drift monitoring: what a monitor computes on each window of traffic, and how it decides to raise an alert.

A monitor compares a **current window** (the last few hundred requests) with a **reference** (the data the model
was trained on) and asks three questions:

* has one feature moved? `psi` (population stability index, bins fixed on the reference), `feature_pvalues`
  (Kolmogorov-Smirnov for numbers, chi-square for categories) and `bonferroni` (which of those p-values survive
  the number of tests made: with 20 features, one p < 0.05 per window is what chance alone gives);
* has the joint distribution moved? `domain_auc`: a classifier trained to tell reference rows from current rows,
  scored out of fold. AUC 0.5 means it cannot; near 1 means the two samples are different worlds;
* does it persist? `KOfM`: alarm when k of the last m windows were flagged, so that one unlucky window does not
  page anyone.

Once labels arrive (late: a client's answer comes days after the call), `normalized_entropy` and
`calibration_ratio` say how good the served probabilities were, on a scale that does not move with the base rate.

`category_table` is the binning the chi-square test needs (Cochran's rule: no expected count near zero), and
`evidently_drift` has the maintained monitoring library Evidently draw its report of the same two samples, offline.

Lab 18 has learners write PSI, the tests, the domain classifier and the alert rule themselves; the versions here
are the reference that the lab's hidden tests compare with and that later labs import.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OTHER = "(other)"  # the bin of the categories that are rare in the reference, or that it never saw


# --- one feature --------------------------------------------------------------------------------------------------


def quantile_edges(reference: Any, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles 1/bins, ..., (bins-1)/bins, duplicates removed.

    Quantile bins hold about the same share of the reference each, so no bin is empty by construction;
    a feature with few distinct values (the monthly economic indicators) gets fewer, wider bins.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, not {bins}")
    values = np.asarray(reference, dtype=float)
    if values.size == 0:
        raise ValueError("the reference is empty")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray, eps: float) -> float:
    expected, actual = np.maximum(expected, eps), np.maximum(actual, eps)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi(reference: Any, current: Any, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of a numeric feature, with bins fixed on the reference.

    PSI = sum over bins of (c - r) ln(c / r), where r and c are the shares of the reference and of the current
    window in each bin. The bins come from the reference only (`quantile_edges`; bin i holds
    edges[i-1] <= x < edges[i], the outer bins are open), so every window is measured with the same ruler.
    Shares of 0 become `eps`: an empty bin would otherwise make PSI infinite. Rule of thumb: < 0.1 stable,
    0.1-0.25 worth a look, > 0.25 a real shift.
    """
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if current.size == 0:
        raise ValueError("the current window is empty")
    edges = quantile_edges(reference, bins)
    n_bins = len(edges) + 1
    expected = np.bincount(np.digitize(reference, edges), minlength=n_bins) / reference.size
    actual = np.bincount(np.digitize(current, edges), minlength=n_bins) / current.size
    return _psi_from_shares(expected, actual, eps)


def psi_categorical(reference: Any, current: Any, eps: float = 1e-4) -> float:
    """PSI of a categorical feature: one bin per category seen in either sample, shares of 0 become `eps`."""
    reference, current = pd.Series(reference).astype(str), pd.Series(current).astype(str)
    if reference.empty or current.empty:
        raise ValueError("both samples need at least one value")
    categories = sorted(set(reference) | set(current))
    expected = reference.value_counts(normalize=True).reindex(categories, fill_value=0.0).to_numpy()
    actual = current.value_counts(normalize=True).reindex(categories, fill_value=0.0).to_numpy()
    return _psi_from_shares(expected, actual, eps)


def category_table(reference: Any, current: Any, min_share: float = 0.01) -> pd.DataFrame:
    """Counts per category bin, rows `reference` and `current`: the table a chi-square test is run on.

    Bins: every category that makes up at least `min_share` of the reference, and OTHER for the rest (categories
    rarer than that, and categories the reference never saw). The chi-square approximation needs expected
    counts of about 5 or more in every cell (Cochran's rule): a category seen 3 times in 20,000 reference rows
    would make one occurrence in a window look like a miracle. So when OTHER is itself rarer than `min_share`
    in the reference and at least two bins remain, its counts join the least frequent bin (a new category that
    floods the window still shows there). Bins empty in both samples are dropped.
    """
    reference, current = pd.Series(reference).astype(str), pd.Series(current).astype(str)
    if reference.empty or current.empty:
        raise ValueError("both samples need at least one value")
    # dicts, not reindexed Series: a monitor builds this table for every categorical feature of every window
    ref_counts, cur_counts = reference.value_counts().to_dict(), current.value_counts().to_dict()
    kept = [c for c, n in ref_counts.items() if n >= min_share * len(reference)]  # most frequent first
    if not kept:  # min_share above every share: the most frequent category is a bin of its own
        kept = [next(iter(ref_counts))]
    ref_row = [ref_counts[c] for c in kept]
    cur_row = [cur_counts.get(c, 0) for c in kept]
    ref_other, cur_other = len(reference) - sum(ref_row), len(current) - sum(cur_row)
    columns = list(kept)
    if ref_other < min_share * len(reference) and len(kept) >= 2:  # OTHER is rare too: into the least frequent bin
        ref_row[-1] += ref_other
        cur_row[-1] += cur_other
    else:
        ref_row, cur_row, columns = [*ref_row, ref_other], [*cur_row, cur_other], [*columns, OTHER]
    nonempty = [i for i, (r, c) in enumerate(zip(ref_row, cur_row, strict=True)) if r + c > 0]
    return pd.DataFrame(
        [[ref_row[i] for i in nonempty], [cur_row[i] for i in nonempty]],
        index=["reference", "current"],
        columns=[columns[i] for i in nonempty],
    )


def ks_pvalue(reference: Any, current: Any) -> float:
    """Two-sample Kolmogorov-Smirnov p-value, asymptotic: are the two samples from one distribution?

    scipy computes the exact p-value for samples under 10,000 values, which costs up to 20 ms for a window of 400
    against a reference of 5,000 when the samples differ a lot; the asymptotic one agrees to a few digits at these
    sizes for a thirtieth of the time, and a monitor runs it for every numeric feature of every window.
    """
    from scipy.stats import ks_2samp

    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    return float(ks_2samp(reference, current, method="asymp").pvalue)


def chi2_pvalue(reference: Any, current: Any, min_share: float = 0.01) -> float:
    """Chi-square test of homogeneity on `category_table` (scipy's defaults); 1.0 when there is one bin only."""
    from scipy.stats import chi2_contingency

    table = category_table(reference, current, min_share)
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table.to_numpy()).pvalue)


def feature_pvalues(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    min_share: float = 0.01,
) -> pd.Series:
    """One p-value per feature, numeric ones first: KS for `numeric` columns, chi-square for `categorical` ones."""
    values = {col: ks_pvalue(reference[col], current[col]) for col in numeric}
    values.update({col: chi2_pvalue(reference[col], current[col], min_share) for col in categorical})
    return pd.Series(values, name="p_value", dtype=float)


def bonferroni(pvalues: pd.Series, alpha: float = 0.01) -> list[str]:
    """Features whose p-value is below alpha / (number of tests), most significant first.

    With m tests per window, the chance that at least one p-value falls below alpha by luck alone is up to
    m * alpha (20 features at 0.05: about 64% of perfectly stable windows would alarm). Dividing alpha by m keeps
    the chance of any false rejection in a window at or below alpha.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if len(pvalues) == 0:
        return []
    threshold = alpha / len(pvalues)
    return list(pvalues[pvalues < threshold].sort_values(kind="stable").index)


# --- all features at once -----------------------------------------------------------------------------------------


def domain_auc(reference_x: Any, current_x: Any, folds: int = 3, seed: int = 0) -> float:
    """Out-of-fold ROC AUC of a logistic regression that tells current rows (1) from reference rows (0).

    The reference is subsampled (without replacement, `numpy.random.default_rng(seed)`) to as many rows as the
    current window, so the classifier sees balanced classes; `StratifiedKFold(folds, shuffle=True,
    random_state=seed)` gives every row a prediction from a model that did not train on it. Scored on its own
    training rows, the same classifier would find "differences" in two samples of one distribution.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    reference_x = np.asarray(reference_x, dtype=float)
    current_x = np.asarray(current_x, dtype=float)
    n = min(len(current_x), len(reference_x))
    if n < folds:
        raise ValueError(f"need at least {folds} rows on each side, got {len(reference_x)} and {len(current_x)}")
    rng = np.random.default_rng(seed)
    sample = reference_x[rng.choice(len(reference_x), size=n, replace=False)]
    x = np.vstack([sample, current_x])
    y = np.r_[np.zeros(n), np.ones(len(current_x))]
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = LogisticRegression(max_iter=1000).fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


# --- over time ----------------------------------------------------------------------------------------------------


class KOfM:
    """Alarm when at least k of the last m windows were flagged (the current one included).

    A single flagged window is often noise (a rare category, an odd hour); drift that matters persists.
    k = m = 1 alarms on every flag; larger m waits longer but cries wolf less.
    """

    def __init__(self, k: int = 2, m: int = 3) -> None:
        if not 1 <= k <= m:
            raise ValueError(f"need 1 <= k <= m, got k={k}, m={m}")
        self.k, self.m = k, m
        self.recent: deque[bool] = deque(maxlen=m)

    def update(self, flagged: bool) -> bool:
        """Record one window's flag; True when the alarm condition holds after it."""
        self.recent.append(bool(flagged))
        return sum(self.recent) >= self.k


# --- once labels arrive -------------------------------------------------------------------------------------------


def normalized_entropy(y: Any, p: Any, eps: float = 1e-15) -> float:
    """Log loss divided by the log loss of always predicting the observed rate (He et al. 2014).

    1.0: no better than knowing the base rate; below 1: the model adds information; above 1: it does harm.
    Unlike plain log loss, it does not rise just because the positive rate moved from 6% to 50%. NaN when the
    window holds one class only (its base rate then has no uncertainty to normalise by).
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    rate = y.mean()
    if rate in (0.0, 1.0):
        return float("nan")
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(loss / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate)))


def calibration_ratio(y: Any, p: Any) -> float:
    """Expected over observed positives, sum(p) / sum(y): 1.0 when the model predicts as many yeses as happen."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    observed = y.sum()
    return float(p.sum() / observed) if observed > 0 else float("nan")


# --- the maintained library's view --------------------------------------------------------------------------------


def _evidently() -> tuple[Any, Any, Any, Any]:
    """Import Evidently offline and quietly, on this course's pandas.

    Evidently 0.7 imports `pandas.core.dtypes.common.infer_dtype_from_object`, which pandas 3 removed; it is used
    only by a column-type test the drift report never runs, so an equivalent is put back before the import.
    DO_NOT_TRACK turns its usage telemetry off.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import pandas.core.dtypes.common as pandas_common

    if not hasattr(pandas_common, "infer_dtype_from_object"):
        pandas_common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    return DataDefinition, Dataset, Report, DataDriftPreset


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str],
    html: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Evidently's DataDriftPreset on two samples: one row per column (method, score, threshold, drifted).

    Evidently picks the method per column from the data (with more than 1,000 reference rows: normed
    Wasserstein distance for numbers, Jensen-Shannon distance for categories, each with a threshold of 0.1;
    with fewer, KS and chi-square p-values). `html`, if given, is where the interactive report is written: one
    self-contained file, its scripts inline, so it opens offline.
    """
    data_definition, dataset, report, preset = _evidently()
    numeric, categorical = list(numeric), list(categorical)
    definition = data_definition(numerical_columns=numeric, categorical_columns=categorical)
    columns = numeric + categorical
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = report([preset()]).run(
            reference_data=dataset.from_pandas(reference[columns], data_definition=definition),
            current_data=dataset.from_pandas(current[columns], data_definition=definition),
        )
        if html is not None:
            Path(html).parent.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(html))
        metrics = snapshot.dict()["metrics"]
    rows = []
    for metric in metrics:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            method, value, threshold = config["method"], float(metric["value"]), float(config["threshold"])
            is_pvalue = "p_value" in method
            rows.append(
                {
                    "column": config["column"],
                    "method": method,
                    "score": value,
                    "threshold": threshold,
                    "drifted": value < threshold if is_pvalue else value >= threshold,
                }
            )
    return pd.DataFrame(rows).set_index("column")
