"""course.machinery.integrity: tampering is found, honest work (every solution) is not."""

from __future__ import annotations

import nbformat
import pytest

from course.machinery import integrity
from course.machinery.labs import REGISTRY

pytestmark = pytest.mark.unit


def _notebook(*sources: str, locked: str = "") -> nbformat.NotebookNode:
    cells = []
    if locked:
        cell = nbformat.v4.new_code_cell(locked)
        cell.metadata["nbgrader"] = {"locked": True, "grade": False, "solution": False, "grade_id": "setup"}
        cells.append(cell)
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return nbformat.v4.new_notebook(cells=cells)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("get_ipython().input_transformers_post.append(f)", "get_ipython"),
        ("exec('x = 1')", "exec"),
        ("getattr(__builtins__, 'ev' + 'al')('1')", "__builtins__"),
        ("import builtins\nbuiltins.len = lambda x: 0", "builtins"),
        ("import numpy as np\nnp.allclose = lambda *a, **k: True", "np.allclose"),
        ("import torch\ntorch.testing.assert_close = print", "torch.testing.assert_close"),
        ("setattr(object, 'x', 1)", "setattr"),
        ("import sys\nsys.modules['numpy'] = None", "sys.modules"),
        ("import sys\nsys.stderr = open('/dev/null', 'w')", "sys.stderr"),
        ("import os\nos._exit(0)", "os._exit"),
        ("from os import _exit", "os._exit"),
        ("import signal\nsignal.signal(2, signal.SIG_IGN)", "signal"),
        ("import importlib", "importlib"),
        ("def f():\n    return f.__globals__", "__globals__"),
        ("!rm -rf /", "shell commands"),
        ("%load_ext autoreload", "%load_ext"),
        ("%%bash\nls", "%%bash"),
        ("%%writefile x.py\nimport inspect", "inspect"),
    ],
)
def test_tampering_is_found_with_what_it_does(source, says):
    findings = integrity.scan(_notebook(source))
    assert findings and any(says in str(f) for f in findings), findings


def test_rebinding_a_locked_helper_or_import_is_found_but_importing_it_again_is_not():
    locked = "import numpy as np\n\ndef accuracy(a, b):\n    return (a == b).mean()"
    assert integrity.scan(_notebook("import numpy as np\nfrom math import pi", locked=locked)) == []
    findings = integrity.scan(_notebook("def accuracy(a, b):\n    return 1.0", locked=locked))
    assert any("rebinds `accuracy`" in str(f) for f in findings), findings
    assert any("rebinds `np`" in str(f) for f in integrity.scan(_notebook("np = None", locked=locked)))


def test_honest_code_and_allowed_magics_are_not_found():
    honest = (
        "%matplotlib inline\nimport torch\nx = torch.zeros(3)\nx.add_(1)\nmodel.eval()\n"
        "import pandas as pd\npd.options.display.max_rows = 5\n%time y = x * 2"
    )
    assert integrity.scan(_notebook(honest)) == []


def test_cells_as_released_are_trusted():
    demo = "import sys\nprint(sorted(sys.modules)[:3])"
    release = _notebook(demo)
    assert integrity.scan(_notebook(demo), release) == []
    assert integrity.scan(_notebook(demo + "\n"), release), "an edited cell is read again"


@pytest.mark.parametrize("lab", [lab.id for lab in REGISTRY if lab.release_notebooks()])
def test_no_solution_is_flagged(lab):
    """Every solution, read as a submission against its own release: honest work must pass."""
    for path in next(lab_ for lab_ in REGISTRY if lab_.id == lab).solution_notebooks():
        release = path.parents[2] / "labs" / lab / path.name
        findings = integrity.scan(nbformat.read(path, as_version=4), nbformat.read(release, as_version=4))
        assert not findings, [str(f) for f in findings]
