#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then pytest (unit, data, cli, and the
# grading round trip, in which every solution executes exactly once). pytest's exit 5
# (nothing collected) is a failure here: a suite that ran no test proves nothing.
#   LABS=15,16 make test    limits the solutions executed and graded to those labs
set -uo pipefail
cd "$(dirname "$0")/.."
export COURSE_THREADS="${COURSE_THREADS:-$(nproc)}" PYDEVD_DISABLE_FILE_VALIDATION=1 MPLBACKEND=Agg COURSE_PROGRESS=0
export COURSE_LABS="${LABS:-${COURSE_LABS:-}}"

ruff check . && ruff format --check . || { echo "ruff found problems (run: ruff check --fix . && ruff format .)"; exit 1; }

python -m pytest tests -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure."
    exit 1
fi
exit "$rc"
