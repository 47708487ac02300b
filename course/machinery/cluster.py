"""`course grade --cluster`: the sandboxed executions of a cohort fan out over many machines.

Executing the notebooks is nearly all of grading's time, and it is a pure function: a
sanitized notebook in, an executed notebook and what the execution saw out. So that is
the one part sent to a Dask cluster (Dask distributed: maintained, runs from a laptop's
`LocalCluster` to a scheduler with hundreds of workers, and ships Python functions and
bytes without a shared filesystem). Everything that touches the gradebook stays here,
on the instructor's machine: nbgrader's sanitize step before, its scoring, the
integrity checks and the feedback after. The results merge into the one gradebook.

Each worker machine needs a clone of the course at the same commit, set up (`make
setup`), with bubblewrap: the sandbox runs there. `local:N` starts N workers on this
machine, bound to 127.0.0.1, which is how the test suite proves the path.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from course.machinery import autograde, grades
from course.machinery.grading import (
    SUBMITTED,
    Options,
    Outcome,
    _finish,
    _max_score,
    _run_group,
    _settings,
    precheck,
    run_worker,
)
from course.machinery.labs import BY_ID


def execute_remotely(notebooks: dict[str, bytes], settings: dict, limit: float) -> dict:
    """On a worker: run each notebook as `course.machinery.execution` does here, within `limit` seconds in all."""
    executed, reports, start = {}, {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-remote-") as tmp:
        for name, data in notebooks.items():
            src, dst, report = Path(tmp) / name, Path(tmp) / f"executed-{name}", Path(tmp) / f"{name}.json"
            src.write_bytes(data)
            command = [sys.executable, "-m", "course.machinery.execution", str(src), str(dst), "--report", str(report),
                       "--limits", json.dumps(settings["limits"]), "--cell-timeout", str(settings["cell_timeout"]),
                       "--threads", str(settings["threads"])]  # fmt: skip
            if not settings["sandboxed"]:
                command.append("--unsandboxed")
            code, out = _run_group(command, dict(os.environ), max(1.0, limit - (time.perf_counter() - start)))
            if code is None:
                return {"timed_out": True}
            if code != 0:
                return {"error": out.strip().splitlines()[-3:]}
            executed[name], reports[name] = dst.read_bytes(), json.loads(report.read_text())
    return {"executed": executed, "reports": reports}


def connect(address: str):
    """A Dask client for `tcp://host:port`, or for `local:N` workers on 127.0.0.1 (one thread each)."""
    from distributed import Client, LocalCluster

    if address.startswith("local:"):
        workers = int(address.split(":", 1)[1] or 2)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster)
    return Client(address)


def grade(root: Path, pairs: list[tuple[str, str]], options: Options, address: str, threads: int) -> list[Outcome]:
    """Sanitize here, execute on the cluster, score here; every grade recorded as soon as it is in."""
    client = connect(address)
    try:
        with ThreadPoolExecutor(max_workers=max(2, len(client.scheduler_info()["workers"]))) as pool:
            return list(pool.map(lambda pair: _one(root, client, pair, options, threads), pairs))
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()


def _one(root: Path, client, pair: tuple[str, str], options: Options, threads: int) -> Outcome:
    student, lab_id = pair
    lab, submission = BY_ID[lab_id], root / SUBMITTED / student / lab_id
    outcome = Outcome(student, lab_id, max_score=_max_score(root, lab_id), digest=grades.digest(submission))
    problems, gradable = precheck(submission, root / "labs" / lab_id, root / "solutions" / lab_id)
    outcome.problems.extend(problems)
    if not gradable:
        outcome.status = "invalid"
        grades.record(root, outcome)
        return outcome
    settings, limit = _settings(lab, options, threads), options.limit_for(lab)
    start = time.perf_counter()
    code, out, result = run_worker(root, lab_id, student, settings, ["sanitize"], limit)
    if code == 0:
        sanitized = root / "grading" / "autograded" / student / lab_id
        notebooks = {p.name: p.read_bytes() for p in sorted(sanitized.glob("*.ipynb"))}
        answer = client.submit(execute_remotely, notebooks, asdict(settings), limit, pure=False).result()
        code, out = _received(root, student, lab_id, answer)
        if code == 0:
            code, out, result = run_worker(root, lab_id, student, settings, ["score"], limit)
    outcome.seconds = time.perf_counter() - start
    outcome = _finish(root, outcome, code, out, result, settings, limit)
    grades.record(root, outcome)
    return outcome


def _received(root: Path, student: str, lab_id: str, answer: dict) -> tuple[int | None, str]:
    """Put a worker's executed notebooks where the `score` stage reads them; (exit code, text) as a worker's."""
    if answer.get("timed_out"):
        return None, ""
    if "error" in answer:
        return 1, "\n".join(answer["error"])
    dest = root / autograde.EXECUTED / student / lab_id
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in answer["executed"].items():
        (dest / name).write_bytes(data)
    stamp = root / SUBMITTED / student / lab_id / "timestamp.txt"
    if stamp.exists():
        (dest / "timestamp.txt").write_bytes(stamp.read_bytes())
    autograde.save_reports(root, lab_id, student, answer["reports"])
    return 0, ""
