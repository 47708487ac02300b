"""course.mlops.tracking: git state, code and environment fingerprints, dataset inputs, a real MLflow server."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from course.mlops import registry, tracking
from course.paths import ROOT

pytestmark = pytest.mark.unit


def git(repo, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tracking store for the module (creating one runs MLflow's migrations: seconds)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = tmp_path_factory.mktemp("tracking")
    uri = registry.local_registry(folder, experiment="tracking-tests")
    yield folder, uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mp.undo()


# --- git ------------------------------------------------------------------------------------------


def test_git_state_of_a_repository_follows_commits_and_tracked_changes(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "v1")
    state = tracking.git_state(repo)
    assert state == tracking.GitState(git(repo, "rev-parse", "HEAD"), False) and state.known
    assert len(state.commit) == 40
    (repo / "notes.txt").write_text("scratch\n")
    assert tracking.git_state(repo).dirty is False, "an untracked file is in no commit: not dirty (git describe)"
    (repo / "train.py").write_text("print('v2')\n")
    assert tracking.git_state(repo).dirty is True, "a tracked file that differs from the commit makes it dirty"
    git(repo, "commit", "-q", "-am", "v2")
    again = tracking.git_state(repo)
    assert again.dirty is False and again.commit != state.commit


def test_git_state_without_a_repository_or_without_git_is_unknown(tmp_path, monkeypatch):
    assert tracking.git_state(tmp_path) == tracking.GitState("unknown", None)
    assert not tracking.git_state(tmp_path).known
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    git(empty, "init", "-q")
    assert tracking.git_state(empty).commit == "unknown", "a repository without a commit has no HEAD"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary to be found
    assert tracking.git_state(ROOT) == tracking.GitState("unknown", None)


def test_git_state_of_the_course_clone():
    if not (ROOT / ".git").exists():
        pytest.skip("the course is not a git clone here")
    state = tracking.git_state()
    assert state.known and len(state.commit) == 40 and state.dirty in (True, False)


# --- code ------------------------------------------------------------------------------------------


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_fingerprint_follows_the_source_of_every_function_given(tmp_path):
    (tmp_path / "v1.py").write_text("def train(x):\n    return x + 1\n\n\ndef helper(x):\n    return 2 * x\n")
    (tmp_path / "v2.py").write_text("def train(x):\n    return x + 1\n\n\ndef helper(x):\n    return 3 * x\n")
    (tmp_path / "v3.py").write_text("def train(x):\n    return x + 1  # a comment\n")
    v1, v2, v3 = (load_module(tmp_path / f"v{i}.py", f"fp_v{i}") for i in (1, 2, 3))
    one = tracking.code_fingerprint(v1.train, v1.helper)
    assert len(one) == 64 and int(one, 16) >= 0
    assert tracking.code_fingerprint(v1.train, v1.helper) == one, "deterministic"
    assert tracking.code_fingerprint(v1.train) == tracking.code_fingerprint(v2.train), "same source, same fingerprint"
    assert tracking.code_fingerprint(v2.train, v2.helper) != one, "a changed helper changes the fingerprint"
    assert tracking.code_fingerprint(v3.train) != tracking.code_fingerprint(v1.train), "any edit counts"
    assert tracking.code_fingerprint(v1.helper, v1.train) != one, "the order of the functions is part of it"


def test_code_fingerprint_refuses_what_has_no_source():
    with pytest.raises(ValueError):
        tracking.code_fingerprint()
    with pytest.raises(TypeError, match="cannot read the source"):
        tracking.code_fingerprint(len)


def test_code_fingerprint_of_a_nested_function_is_dedented():
    def outer():
        def inner(x):
            return x

        return inner

    assert len(tracking.code_fingerprint(outer())) == 64


# --- environment -------------------------------------------------------------------------------------


def test_environment_names_python_packages_and_threads():
    import numpy  # noqa: F401  (loads numpy's BLAS so that its pool is listed)

    with threadpool_limits(limits=1):
        env = tracking.environment()
    assert {"python", "platform", "cpu", "threads", "numpy", "pandas", "scikit-learn", "mlflow", "optuna"} <= set(env)
    assert all(isinstance(v, str) and v for v in env.values()), "every value is a non-empty string (a tag)"
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["pandas"] == pd.__version__
    assert env["threads"] != "none loaded" and all(pool.endswith("=1") for pool in env["threads"].split(","))
    assert tracking.environment(["no-such-package-here"])["no-such-package-here"] == "not installed"


# --- datasets ---------------------------------------------------------------------------------------------


def test_dataset_input_is_logged_with_the_fingerprint_as_digest(store, tmp_path, capfd):
    source = tmp_path / "calls.csv"
    source.write_text("age;job\n30;admin.\n")
    frame = pd.DataFrame({"age": [30, 41], "job": ["admin.", "services"], "rate": [0.5, 1.5], "ok": [True, False]})
    fingerprint = "ab" * 32
    dataset = tracking.dataset_input(frame, name="calls", source=source, fingerprint=fingerprint)
    assert dataset.digest == fingerprint[:36] and dataset.name == "calls"
    assert [(c.name, c.type.name) for c in dataset.schema.inputs] == [
        ("age", "long"),
        ("job", "string"),
        ("rate", "double"),
        ("ok", "boolean"),
    ]
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    logged = inputs[0].dataset
    assert logged.digest == fingerprint[:36] and logged.name == "calls"
    assert json.loads(logged.source)["uri"] == str(source)
    assert inputs[0].tags[0].value == "training"
    out, err = capfd.readouterr()
    assert err == "", f"logging a dataset must stay quiet: {err[:300]}"


# --- the server --------------------------------------------------------------------------------------------


def test_tracking_server_serves_the_store_over_rest_and_stops(store, tmp_path):
    folder, uri = store
    with mlflow.start_run(run_name="served") as run:
        mlflow.log_param("lr", 0.125)
        mlflow.log_metric("val_auc", 0.75)
    experiment = mlflow.get_experiment_by_name("tracking-tests").experiment_id
    ui = tracking.TrackingServer(uri, artifact_root=folder / "artifacts", scratch=tmp_path / "ui")
    with pytest.raises(RuntimeError, match="not started"):
        ui.url  # noqa: B018
    ui.start(wait=False)
    try:
        assert ui.url.startswith("http://127.0.0.1:")
        ui.wait_ready()
        assert ui.running and ui.startup_s is not None and ui.startup_s > 0
        assert ui.wait_ready() is ui, "waiting again on a ready server returns at once"
        answer = httpx.post(
            ui.url + "/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [experiment], "filter": "params.lr = '0.125'", "max_results": 5},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        runs = answer.json()["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run.info.run_id]
        assert {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]} == {"val_auc": 0.75}
        port = ui.port
    finally:
        code = ui.stop()
    assert code == 0 and not ui.running, f"a clean stop; log:\n{ui.log_tail()}"
    assert ui.stop() is None, "stopping twice is harmless"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing listens on the port after stop()"
    assert "Uvicorn running on http://127.0.0.1" in ui.log_path.read_text()


def test_a_server_that_cannot_start_says_why(tmp_path):
    class Broken(tracking.TrackingServer):
        def command(self) -> list[str]:  # what `mlflow server --no-such-option` does, without importing mlflow
            return [sys.executable, "-c", "import sys; print('Error: No such option: --no-such-option'); sys.exit(2)"]

    ui = Broken("sqlite:///unused.db", artifact_root=tmp_path / "artifacts", scratch=tmp_path / "ui")
    with pytest.raises(RuntimeError, match=r"(?s)exited \(code 2\) before it was ready.*no-such-option"):
        ui.start()
    assert not ui.running
    ui.stop()


def test_the_server_command_is_mlflow_server_on_127_0_0_1(tmp_path):
    ui = tracking.TrackingServer("sqlite:///x.db", artifact_root=tmp_path / "a", scratch=tmp_path / "ui")
    ui.port = 5999
    cmd = ui.command()
    assert cmd[:3] == [sys.executable, "-m", "course.mlops.tracking"]
    assert cmd[cmd.index("--") + 1 :] == [
        "server", "--host", "127.0.0.1", "--port", "5999", "--workers", "1",
        "--backend-store-uri", "sqlite:///x.db", "--default-artifact-root", (tmp_path / "a").resolve().as_uri(),
    ]  # fmt: skip
