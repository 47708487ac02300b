# nbgrader configuration for instructors who use nbgrader's own CLI or formgrader
# (run them from this folder: `cd grading && nbgrader formgrader`). The settings
# themselves live in course/grading.py so that `course build`/`course grade` and
# plain nbgrader always agree: source=solutions, release=labs, submissions and
# the gradebook under grading/.
from pathlib import Path

from course.machinery.grading import nbgrader_config

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
c.merge(nbgrader_config(Path(__file__).resolve().parent.parent))
