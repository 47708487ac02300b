"""Lab 12: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "12-versioning-rollback"

IN_PLACE = """        current = self.slot.get()
        if current is not None:  # reuse the served module: copy the new weights in, no second model in memory
            current.model.load_state_dict(model.state_dict())
            model = current.model
        previous = self.slot.swap(model, version)
"""

MUTANTS = [
    Mutant(
        "the service follows @latest (the highest version number) instead of the alias",
        cell="ex-resolve",
        old="return str(client.get_model_version_by_alias(name, alias).version)",
        new='return str(client.get_model_version_by_alias(name, "latest").version)',
        loses=["test-resolve", "test-milestone"],
    ),
    Mutant(
        "rollback to version - 1 instead of the recorded previous champion",
        cell="ex-promotion",
        old="target = resolve_alias(client, name, PREVIOUS)",
        new='target = str(int(resolve_alias(client, name, "champion")) - 1)',
        loses=["test-promotion"],
    ),
    Mutant(
        "the slot is emptied before the new version loads: requests fail during the reload",
        cell="ex-watcher",
        old="            model = self.load(version)\n",
        new="            self.slot._current = None  # free the old model first: two at once need twice the memory\n"
        "            model = self.load(version)\n",
        loses=["test-watcher", "test-milestone"],
    ),
    Mutant(
        "a swap that is not atomic: new weights copied into the model being served",
        cell="ex-watcher",
        old="        previous = self.slot.swap(model, version)\n",
        new=IN_PLACE,
        loses=["test-watcher"],
    ),
]


def test_solution_rolls_back_with_zero_failed_requests(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 0, found.describe()
