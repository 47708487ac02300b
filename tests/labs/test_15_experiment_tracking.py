"""Lab 15: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "15-experiment-tracking"

PEEK = """model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")  # the model the run logged: no need to retrain
    X_fit, X_val, y_fit, y_val = split_rows(data, seed)
    metrics = validation_metrics(model, X_val, y_val)"""

MUTANTS = [
    Mutant(
        "the fingerprint sums the row hashes: the same rows in another order look like the same table",
        cell="ex-fingerprint",
        old="digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())",
        new="digest.update(str(pd.util.hash_pandas_object(frame, index=False).sum()).encode())",
        loses=["test-fingerprint"],
    ),
    Mutant(
        "the seed is not logged (it is 'in the code')",
        cell="ex-log-run",
        old='mlflow.log_params({**params, "seed": seed, **spec_to_params(spec)})',
        new="mlflow.log_params({**params, **spec_to_params(spec)})",
        loses=["test-log-run", "test-sweep", "test-milestone"],
    ),
    Mutant(
        "the data is identified by the file's checksum, not by the sample the run trained on",
        cell="ex-log-run",
        old='"data.fingerprint": fingerprint,',
        new='"data.fingerprint": sha256_of(verify(spec["file"])),',
        loses=["test-log-run"],
    ),
    Mutant(
        "the study always maximizes, whatever the metric",
        cell="ex-sweep",
        old="optuna.create_study(direction=direction,",
        new='optuna.create_study(direction="maximize",',
        loses=["test-sweep"],
    ),
    Mutant(
        "the trials run before the sweep's run is opened: they are not its children",
        cell="ex-sweep",
        old="    with mlflow.start_run(run_name=name) as sweep:\n"
        "        study.optimize(objective, n_trials=n_trials, callbacks=list(callbacks))\n",
        new="    study.optimize(objective, n_trials=n_trials, callbacks=list(callbacks))\n"
        "    with mlflow.start_run(run_name=name) as sweep:\n",
        loses=["test-sweep", "test-milestone"],
    ),
    Mutant(
        "reproduce evaluates the logged model instead of retraining (replay, not reproduction)",
        cell="ex-reproduce",
        old="_, metrics = train_and_evaluate(data, typed_params(params), seed)",
        new=PEEK,
        loses=["test-reproduce"],
    ),
]


def test_solution_reproduces_its_best_trial_bit_for_bit(solution_milestone):
    found = solution_milestone(LAB)
    # One thread per pool, same process, same libraries: every operation repeats in the same order.
    assert found.passed and found.measured == 0.0, found.describe()
