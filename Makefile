# Two commands do everything on a fresh machine:
#   make run    set up, then execute every lab's solution and print the milestone scoreboard
#   make test   set up, then run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test lint build clean

setup: $(VENV)/.installed

# torch goes in first and alone: `torch==2.13.0` resolves to the local CPU wheel,
# while letting a torch-dependent package pull it in would fetch a CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/course doctor
	$(BIN)/python -m course.serving.models
	touch $@

run: setup
	$(BIN)/course run

test: setup
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/test.sh

lint: setup
	$(BIN)/ruff check .

build: setup
	$(BIN)/course build

clean:
	rm -rf build grading/autograded grading/feedback grading/gradebook.db
