"""A local MLflow model registry for the labs, and hot reload of whatever an alias points to.

The registry vocabulary, as MLflow uses it:

* a **registered model** is a name (`mnist-classifier`);
* each `log_model(..., registered_model_name=name)` adds a **version** (1, 2, 3, ...): immutable, numbered in
  order of registration, linked to the run that produced it (its params and metrics);
* an **alias** (`champion`, `challenger`) is a movable pointer from the name to one version. Promotion and
  rollback move a pointer; they never copy, rebuild or rename a model. `models:/<name>@champion` is what a
  service loads, `models:/<name>/3` is one frozen version, and `models:/<name>@latest` (the highest number)
  is *not* a release decision: registering a model must never put it in production.

`local_registry(folder)` puts the tracking store and the registry in one SQLite file inside `folder`, and the
artifacts next to it, so a lab writes nothing anywhere else and needs no tracking server. `register`,
`set_alias`, `resolve_alias` and `load_version` are the few calls the labs make. `AliasWatcher` keeps a
`course.serving.service.ModelSlot` serving the version an alias points to: it polls the alias in a thread of the server
process, loads and checks a new version off the request path, then swaps it in atomically with
`ModelSlot.swap`, so a promotion or a rollback drops no request and never leaves the slot empty.

Lab 12 has the learner write their own `resolve_alias`, promotion, rollback and watcher; these are the reference
versions that later labs import.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before mlflow is imported: it decides at import time whether to start its usage-telemetry client. The labs run
# offline, and a child process (a server started from a notebook) inherits the setting through the environment.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm bars on stderr at every load

import mlflow  # noqa: E402
import torch  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from torch import nn  # noqa: E402

from course.serving.service import ModelSlot  # noqa: E402

CHAMPION = "champion"
CHALLENGER = "challenger"
_DIGITS = re.compile(r"\d+")
_scratch_databases: set[str] = set()  # SQLite files made by local_registry: throw-away, so no fsync

log = logging.getLogger("course.serving.watcher")  # in a server process, course.serving.server sends it to server.log


def quiet() -> None:
    """Keep MLflow's chatter off stderr (a notebook's test cell fails on any stderr output).

    MLflow prints 'Successfully registered model ...', INFO lines (database migrations) and a pickle warning
    through one stream object. Its own on/off switch for that stream is flipped back on by MLflow's autologging
    hooks, so the stream is pointed at the DEBUG level of the logger `course.mlops.registry.mlflow` instead (attach a
    handler to that logger to read them). Deprecation warnings of the libraries under MLflow are ignored. Errors
    still raise.
    """
    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    if getattr(stream, "write", None) is not _to_debug_log:
        stream.write = _to_debug_log  # an instance attribute: print(file=stream) and logging handlers call it
        stream.flush = lambda: None
    for module in ("mlflow", "alembic", "sqlalchemy"):
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")


_mlflow_events = logging.getLogger("course.mlops.registry.mlflow")


def _to_debug_log(text: str) -> None:
    if text.strip():
        _mlflow_events.debug(text.rstrip())


def _install_fast_sqlite() -> None:
    """Skip fsync on the SQLite files of scratch registries.

    Creating an MLflow store runs ~50 schema migrations, each committed with an fsync: 5-10 s on a busy disk,
    against 1-2 s without. A lab's registry is thrown away at the end, so durability buys nothing there. Only
    databases made by `local_registry` are affected; a real registry runs on a database server anyway.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_install_fast_sqlite, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection) or not _scratch_databases:
            return
        rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
        if any(row[1] == "main" and row[2] in _scratch_databases for row in rows):
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    _install_fast_sqlite.done = True  # type: ignore[attr-defined]


def local_registry(folder: str | os.PathLike[str], experiment: str = "labs") -> str:
    """A tracking store and model registry in `folder/mlflow.db`, artifacts in `folder/artifacts`; the URI.

    Sets the URI for this process (and, through MLFLOW_TRACKING_URI, for the processes it starts) and makes
    `experiment` the active one, so runs and their artifacts land in `folder` and nowhere else.
    """
    quiet()
    _install_fast_sqlite()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    _scratch_databases.add(str(db))
    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=(folder / "artifacts").as_uri())
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri


def register(
    model: nn.Module,
    name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    aliases: tuple[str, ...] = (),
) -> str:
    """Log `model` in a new run (with its params and metrics) as the next version of `name`; the version.

    The model is pickled whole (MLflow's 'pickle' format: no example input needed, loads as the same
    nn.Module). Unpickling runs code, so load only versions you registered yourself. `tags` go on the
    version, `aliases` are pointed at it.
    """
    quiet()
    with mlflow.start_run(run_name=f"{name}-candidate", nested=True):  # nested: fine inside a caller's run
        if params:
            mlflow.log_params(dict(params))
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=name,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # not inferred: that imports the model
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    if description:
        client.update_model_version(name, version, description=description)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, str(value))
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return version


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point `alias` at `version` (moving it if it pointed elsewhere): one row in the registry changes."""
    MlflowClient().set_registered_model_alias(name, alias, str(version))


@dataclass(frozen=True)
class Resolved:
    """The version an alias points to, and what the registry knows about it."""

    name: str
    alias: str
    version: str
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The frozen version (not the alias): load this, so what you load is what you resolved."""
        return f"models:/{self.name}/{self.version}"


def resolve_alias(name: str, alias: str = CHAMPION, client: MlflowClient | None = None) -> Resolved | None:
    """The version `alias` points to now, with its run's metrics; None if the model or the alias does not exist."""
    client = client or MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return Resolved(name, alias, str(mv.version), mv.run_id, dict(metrics), dict(mv.tags or {}))


def load_version(name: str, version_or_alias: str | int) -> nn.Module:
    """`models:/name/<version>` (digits) or `models:/name@<alias>`, as an nn.Module in eval mode.

    The artifacts are copied to a temporary folder, read, and the folder removed.
    """
    quiet()
    ref = str(version_or_alias)
    uri = f"models:/{name}/{ref}" if _DIGITS.fullmatch(ref) else f"models:/{name}@{ref}"
    with tempfile.TemporaryDirectory(prefix="course-model-") as tmp:
        model = mlflow.pytorch.load_model(uri, dst_path=tmp)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{uri} holds a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def check_model(model: nn.Module, probe: torch.Tensor, classes: int = 10) -> None:
    """Raise unless `model(probe)` gives finite logits of shape (len(probe), classes): a last look before serving."""
    with torch.inference_mode():
        out = model(probe)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(probe), classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        expected = (len(probe), classes)
        raise ValueError(f"the model answers a probe of {len(probe)} images with {shape}, not {expected}")
    if not torch.isfinite(out).all():
        raise ValueError("the model answers the probe with NaN or infinite logits")


@dataclass(frozen=True)
class Swap:
    at: float  # time.time() when the new version started serving
    previous: str | None
    version: str
    load_s: float  # how long loading and checking took, off the request path


class AliasWatcher:
    """Keep `slot` serving the version `alias` points to; see the module docstring.

    `check_once()` is one poll: resolve the alias to a version number; if it is not the version being served,
    load *that number* (not the alias again: it may have moved since), check it on a probe batch, and
    `slot.swap()` it in. Until the swap, requests are answered by the old model; a request that took its
    snapshot before the swap finishes on the old model. A version that fails to load or to pass the check is
    not served: the old one stays, `error` says why, and the next poll tries again. `start()` polls every
    `interval_s` in a daemon thread.
    """

    def __init__(
        self,
        slot: ModelSlot,
        name: str,
        alias: str = CHAMPION,
        *,
        interval_s: float = 0.1,
        client: MlflowClient | None = None,
        load: Callable[[str], nn.Module] | None = None,
        probe: torch.Tensor | None = None,
    ) -> None:
        self.slot = slot
        self.name = name
        self.alias = alias
        self.interval_s = interval_s
        self.client = client or MlflowClient()
        self.load = load or (lambda version: load_version(name, version))
        self.probe = torch.zeros(2, 1, 28, 28) if probe is None else probe
        self.error: str | None = None
        self.swaps: list[Swap] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> bool:
        """One poll; True if a new version is now being served. Never raises, never empties the slot."""
        started = time.perf_counter()
        try:
            target = resolve_alias(self.name, self.alias, self.client)
            if target is None:
                raise LookupError(f"{self.name} has no alias {self.alias!r}")
            if target.version == self.slot.version:
                self.error = None
                return False
            model = self.load(target.version)
            model.eval()
            check_model(model, self.probe)
        except Exception as exc:  # keep serving what we serve; try again at the next poll
            message = f"{type(exc).__name__}: {exc}"
            if message != self.error:
                log.warning("not swapping to %s@%s: %s", self.name, self.alias, message)
            self.error = message
            return False
        previous = self.slot.swap(model, target.version)
        self.error = None
        self.swaps.append(
            Swap(time.time(), previous.version if previous else None, target.version, time.perf_counter() - started)
        )
        log.info("now serving %s version %s (was %s)", self.name, target.version, self.swaps[-1].previous)
        return True

    def run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.interval_s)

    def start(self) -> AliasWatcher:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name=f"alias-watcher-{self.alias}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
