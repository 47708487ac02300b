"""Lab 02: plausible wrong answers that must lose points, and the solution's accuracy target."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "02-mnist-classifier"

MUTANTS = [
    Mutant(
        "accuracy measured on the training set",
        cell="fit",
        old="accuracy(model, test_loader, device)",
        new="accuracy(model, train_loader, device)",
        loses=["test-fit"],
    ),
    Mutant(
        "training loop without zero_grad",
        cell="train-loop",
        old="optimizer.zero_grad()",
        new="pass",
        loses=["test-train-loop"],
    ),
    Mutant(
        "softmax fed to CrossEntropyLoss",
        cell="train-loop",
        old="loss = loss_fn(logits, y)",
        new="loss = loss_fn(logits.softmax(dim=1), y)",
        loses=["test-train-loop"],
    ),
    Mutant("evaluation left in train mode", cell="accuracy", old="model.eval()", new="pass", loses=["test-accuracy"]),
    Mutant(
        "OneCycleLR stepped once per epoch instead of after every batch",
        cell="fit",
        old="device, scheduler)\n",
        new="device)\n        scheduler.step()\n",
        loses=["test-fit"],
    ),
    Mutant(
        "the global RNG reseeded instead of a generator of the loader's own",
        cell="make-loaders",
        old="generator = torch.Generator().manual_seed(seed)",
        new="torch.manual_seed(seed)\n    generator = None",
        loses=["test-make-loaders"],
    ),
    Mutant(
        "labels off by one",
        cell="mnist-dataset",
        old="torch.as_tensor(np.asarray(labels), dtype=torch.int64)",
        new="torch.as_tensor(np.asarray(labels), dtype=torch.int64) + 1",
        loses=["test-mnist-dataset"],
    ),
]


def test_solution_reaches_the_course_maps_target_of_99_percent(solution_milestone):
    found = solution_milestone(LAB)
    assert found.measured >= 99.0, found.describe()
