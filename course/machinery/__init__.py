"""The course's own machinery, for maintainers and instructors: not what a lab teaches.

- `labs`: the registry of labs, their budgets and files.
- `notebooks`: reading, executing (papermill) and scoring (nbgrader's rule) notebooks.
- `grading`: nbgrader driven for a cohort: build the release, autograde in parallel, grades and feedback.
- `running`: `course run`, the milestone scoreboard.
- `checking`: `course check`, a learner's notebook explained in plain words.
- `doctor`: `course doctor`, is this machine ready.
- `cli`: the `course` command.

The machinery imports the learners' library, never the other way round.
"""
