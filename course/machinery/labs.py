"""The labs that exist, their budgets, and where each one's files are.

The course map (`docs/course-map.md`, the syllabus) is the specification; this
registry holds the part the tools need, and a unit test keeps the two in step.
A lab's everything is found from its id: `solutions/<id>/`, `labs/<id>/`,
`tests/labs/test_<id with underscores>.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from course.paths import LABS, SOLUTIONS


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    budget_s: int  # wall time of the whole solution notebook on 2 CPU cores
    hours: float  # estimated learner time at 15 h/week
    memory_gib: float = 4.0  # what one submission may use when graded (the sandbox's limit)

    @property
    def number(self) -> int:
        return int(self.id.split("-", 1)[0])

    @property
    def phase(self) -> int:
        """1: ML foundations (01-06), 2: production serving (07-14), 3: MLOps and evals (15-22)."""
        return 1 if self.number <= 6 else 2 if self.number <= 14 else 3

    @property
    def test_module(self) -> str:
        """The dotted name of the lab's own tests (its plausible wrong answers)."""
        return "tests.labs.test_" + self.id.replace("-", "_")

    def solution_notebooks(self, root: Path = SOLUTIONS) -> list[Path]:
        return sorted((root / self.id).glob("*.ipynb"))

    def release_notebooks(self, root: Path = LABS) -> list[Path]:
        return sorted((root / self.id).glob("*.ipynb"))


REGISTRY: tuple[Lab, ...] = (
    Lab("01-pytorch-fundamentals", "PyTorch fundamentals", budget_s=60, hours=6),
    Lab("02-mnist-classifier", "An MNIST classifier from scratch", budget_s=120, hours=10),
    Lab("03-debugging-training", "Debugging training", budget_s=90, hours=8),
    Lab("04-classical-ml", "Classical ML: pipelines, leakage, calibration", budget_s=60, hours=10),
    Lab("05-transformer-finetuning", "Fine-tuning a transformer", budget_s=180, hours=12),
    Lab("06-papers", "From the paper to the code", budget_s=30, hours=10),
    Lab("07-model-packaging", "Packaging a model", budget_s=60, hours=8),
    Lab("08-rest-api", "A model behind a REST API, with rate limits", budget_s=90, hours=12),
    Lab("09-latency-profiling", "Latency: percentiles, load generators, profilers", budget_s=90, hours=10),
    Lab("10-latency-optimization", "Cutting p95: dynamic batching and int8 quantization", budget_s=120, hours=12),
    Lab("11-gpu-performance", "GPU performance and the roofline", budget_s=120, hours=10),
    Lab("12-versioning-rollback", "Model versioning and rollback", budget_s=90, hours=10),
    Lab("13-deployment-strategies", "Deployment strategies: shadow, canary, A/B", budget_s=60, hours=10),
    Lab("14-distributed-training", "Distributed training with DDP", budget_s=120, hours=10),
    Lab("15-experiment-tracking", "Experiment tracking and reproducible runs", budget_s=90, hours=10),
    Lab("16-data-validation", "Data validation, versions and training-serving skew", budget_s=60, hours=10),
    Lab("17-eval-harness", "An eval harness that gates every deploy", budget_s=90, hours=12),
    Lab("18-drift-detection", "Detecting and responding to drift", budget_s=90, hours=12),
    Lab("19-incident-retrospective", "An incident, its rollback and its retrospective", budget_s=60, hours=8),
    Lab("20-llmops-rag", "LLMOps: retrieval, a small LLM and a hybrid router", budget_s=180, hours=14),
    # 21-retraining-pipeline and 22-capstone-fraud are in the course map and join here when their solutions land.
)

BY_ID = {lab.id: lab for lab in REGISTRY}


def resolve(names: list[str] | None) -> list[Lab]:
    """Labs named on the command line, by full id or number ('2', '02'); all when none."""
    if not names:
        return list(REGISTRY)
    chosen = []
    for name in names:
        matches = [
            lab
            for lab in REGISTRY
            if lab.id == name or (name.isdigit() and lab.number == int(name)) or lab.id.startswith(name + "-")
        ]
        if not matches:
            known = ", ".join(lab.id for lab in REGISTRY)
            raise SystemExit(f"Unknown lab {name!r}. Known labs: {known}.")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def lab_of(notebook: Path) -> Lab:
    """The lab a notebook belongs to, from its folder name."""
    lab_id = notebook.resolve().parent.name
    if lab_id not in BY_ID:
        raise SystemExit(f"{notebook} is not inside a lab folder (expected labs/NN-slug/...).")
    return BY_ID[lab_id]
