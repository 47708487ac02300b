import pytest
import torch

from course import runtime
from course.machinery import labs
from course.paths import COURSE_MAP

pytestmark = pytest.mark.unit


def test_setup_sets_threads_and_seeds(monkeypatch):
    monkeypatch.setenv("COURSE_THREADS", "1")
    before = torch.get_num_threads()
    try:
        rt = runtime.setup(seed=3)
        a = torch.rand(3)
        runtime.setup(seed=3)
        assert torch.equal(a, torch.rand(3))
        assert rt.threads == 1 and torch.get_num_threads() == 1
        assert rt.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    finally:
        torch.set_num_threads(before)


def test_asking_for_cuda_without_a_gpu_says_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="default CPU profile"):
        runtime.pick_device("cuda")


def test_registry_matches_the_solutions_folder():
    on_disk = sorted(p.name for p in labs.SOLUTIONS.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [lab.id for lab in labs.REGISTRY] == on_disk
    for lab in labs.REGISTRY:
        assert lab.solution_notebooks(), f"{lab.id} has no notebook"


@pytest.mark.parametrize("name", ["2", "02", "02-mnist-classifier"])
def test_resolve_accepts_numbers_and_ids(name):
    assert [lab.id for lab in labs.resolve([name])] == ["02-mnist-classifier"]


def test_resolve_rejects_unknown_lab_with_the_list():
    with pytest.raises(SystemExit, match="Known labs: 01-pytorch-fundamentals"):
        labs.resolve(["99"])


def _course_map_rows() -> dict[str, tuple[float, int]]:
    """id -> (hours, budget in s), read from the syllabus tables."""
    rows = {}
    for line in COURSE_MAP.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0][:2].isdigit() and cells[4].endswith(" s"):
            rows[cells[0]] = (float(cells[3]), int(cells[4].removesuffix(" s")))
    return rows


def test_the_registry_agrees_with_the_course_map_in_the_repository():
    rows = _course_map_rows()
    assert len(rows) == 22, f"docs/course-map.md should list the 22 labs of the roadmap, found {sorted(rows)}"
    for lab in labs.REGISTRY:
        assert lab.id in rows, f"{lab.id} is in course/machinery/labs.py but not in docs/course-map.md"
        assert rows[lab.id] == (lab.hours, lab.budget_s), (
            f"{lab.id}: the course map says {rows[lab.id]} (hours, budget s), the registry {(lab.hours, lab.budget_s)}"
        )
