"""course.mlops.registry: a local MLflow registry, aliases, and hot reload that never drops the served model."""

from __future__ import annotations

import threading
import time

import mlflow
import pytest
import torch

from course.mlops import registry
from course.serving import models, service

pytestmark = pytest.mark.unit


def tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.mlp(hidden=8).eval()


def predict(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        return model(x).argmax(1).tolist()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One registry for the module (creating one runs MLflow's migrations: seconds); each test uses its own name."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored at teardown: later subprocesses must not inherit it
    folder = tmp_path_factory.mktemp("registry")
    uri = registry.local_registry(folder)
    yield folder, uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mp.undo()


def test_local_registry_keeps_everything_in_its_folder(store, capfd):
    folder, uri = store
    assert uri == f"sqlite:///{folder.resolve() / 'mlflow.db'}" and mlflow.get_tracking_uri() == uri
    version = registry.register(tiny_model(0), "folder-test", metrics={"accuracy": 0.5}, params={"hidden": 8})
    assert version == "1"
    out, err = capfd.readouterr()
    assert err == "" and out == "", f"MLflow must stay quiet (a notebook test cell fails on stderr): {err[:300]}"
    files = [p for p in (folder / "artifacts").rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in files), "the model's artifacts live under folder/artifacts"
    assert registry.local_registry(folder) == uri, "opening the same folder again reuses the store"


def test_versions_aliases_and_latest(store):
    a, b = tiny_model(1), tiny_model(2)
    v1 = registry.register(
        a,
        "alias-test",
        metrics={"accuracy": 0.9},
        tags={"data": "mnist"},
        description="first",
        aliases=(registry.CHAMPION,),
    )
    v2 = registry.register(b, "alias-test", metrics={"accuracy": 0.8}, aliases=(registry.CHALLENGER,))
    assert (v1, v2) == ("1", "2")
    champion = registry.resolve_alias("alias-test")
    assert champion is not None and champion.version == "1" and champion.uri == "models:/alias-test/1"
    assert champion.metrics == {"accuracy": 0.9} and champion.tags == {"data": "mnist"}
    assert registry.resolve_alias("alias-test", "latest").version == "2", "latest is the highest number"
    assert registry.resolve_alias("alias-test", "no-such-alias") is None
    assert registry.resolve_alias("no-such-model") is None
    x = torch.rand(16, 1, 28, 28)
    assert predict(registry.load_version("alias-test", 1), x) == predict(a, x)
    assert predict(registry.load_version("alias-test", "challenger"), x) == predict(b, x)
    registry.set_alias("alias-test", registry.CHAMPION, 2)
    assert registry.resolve_alias("alias-test").version == "2"


def test_check_model_refuses_wrong_shapes_and_nan():
    probe = torch.zeros(2, 1, 28, 28)
    registry.check_model(tiny_model(0), probe)
    with pytest.raises(ValueError, match="not \\(2, 10\\)"):
        registry.check_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), probe)
    nan_model = tiny_model(0)
    with torch.no_grad():
        nan_model[3].bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        registry.check_model(nan_model, probe)


def test_watcher_swaps_atomically_and_never_empties_the_slot(store):
    old, new = tiny_model(3), tiny_model(4)
    registry.register(old, "watch-test", aliases=(registry.CHAMPION,))
    registry.register(new, "watch-test")
    slot = service.ModelSlot()
    watcher = registry.AliasWatcher(slot, "watch-test")
    assert watcher.check_once() and slot.version == "1", "an empty slot gets the champion"
    assert not watcher.check_once() and len(watcher.swaps) == 1, "nothing to do while the alias stays put"

    gate, loading = threading.Event(), threading.Event()

    def slow_load(version: str) -> torch.nn.Module:
        loading.set()
        gate.wait(10)
        return registry.load_version("watch-test", version)

    watcher.load = slow_load
    snapshot = slot.get()
    registry.set_alias("watch-test", registry.CHAMPION, 2)
    swapped = []
    poll = threading.Thread(target=lambda: swapped.append(watcher.check_once()))
    poll.start()
    assert loading.wait(10)
    assert slot.get() is snapshot, "while the new version loads, the old one keeps serving"
    gate.set()
    poll.join(10)
    assert swapped == [True] and slot.version == "2" and watcher.swaps[-1].previous == "1"
    x = torch.rand(8, 1, 28, 28)
    assert predict(snapshot.model, x) == predict(old, x), "a snapshot taken before the swap still holds the old model"
    assert predict(slot.get().model, x) == predict(new, x)


def test_watcher_keeps_serving_when_a_version_cannot_be_served(store):
    registry.register(tiny_model(5), "broken-test", aliases=(registry.CHAMPION,))
    registry.register(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)), "broken-test")
    slot = service.ModelSlot()
    watcher = registry.AliasWatcher(slot, "broken-test")
    watcher.check_once()
    served = slot.get()
    registry.set_alias("broken-test", registry.CHAMPION, 2)
    assert not watcher.check_once() and slot.get() is served, "a model with 3 outputs is not swapped in"
    assert watcher.error and "(2, 10)" in watcher.error

    def failing(version: str) -> torch.nn.Module:
        raise OSError("artifact store unreachable")

    watcher.load = failing
    assert not watcher.check_once() and slot.get() is served and "unreachable" in watcher.error
    registry.set_alias("broken-test", registry.CHAMPION, 1)
    assert not watcher.check_once() and watcher.error is None, "back on the served version: nothing to do"


def test_watcher_thread_follows_the_alias(store):
    registry.register(tiny_model(6), "thread-test", aliases=(registry.CHAMPION,))
    registry.register(tiny_model(7), "thread-test")
    slot = service.ModelSlot()
    watcher = registry.AliasWatcher(slot, "thread-test", interval_s=0.02).start()
    try:
        deadline = time.monotonic() + 10
        while slot.version != "1" and time.monotonic() < deadline:
            time.sleep(0.01)
        registry.set_alias("thread-test", registry.CHAMPION, 2)
        while slot.version != "2" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slot.version == "2", f"the watcher thread did not follow the alias: {watcher.error}"
    finally:
        watcher.stop()
    assert watcher._thread is not None and not watcher._thread.is_alive()
