"""mle-course: the library that the lab notebooks import, and the `course` CLI.

Notebooks stay thin (narrative, exercises, tests); reusable machinery lives here,
split by role: data, runtime, training, plots, milestones, notebooks, grading,
running, checking, doctor, cli.
"""

__version__ = "0.1.0"
