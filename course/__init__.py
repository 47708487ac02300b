"""mle-course: the library the lab notebooks import, and the course's machinery.

What every lab uses sits at the top: `runtime` (threads, seeds, device), `milestones`
(a lab's headline result, shown and recorded), `data` (checksummed datasets), `plots`.
The rest of the library is grouped as the roadmap is:

- `course.foundations`: training loops, text encoders, distributed training (phase 1, lab 14);
- `course.serving`: packaging, the REST service, latency and load, rollouts (phase 2);
- `course.mlops`: the model registry and the MLOps labs (phase 3).
- `course.llmops`: retrieval, a small LLM offline, an LLM service and a hybrid router (lab 20).

`course.machinery` is not part of any lab: it builds, runs, checks and grades the
labs (the `course` command). It imports the library; the library never imports it.
"""

__version__ = "0.1.0"
