# make demo — run the embedded demo (fake IdP + API, in-process, no network)
# make test — lint (ruff, import contracts, layout), type-check and run the test-suite (once on httpx, once on httpx2)
# Each target creates or refreshes the local virtualenv first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest pytest-httpx pytest-httpx2 bench venv clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cli,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/authpulse demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_layout.py

typecheck: $(STAMP)
	$(BIN)/mypy

system-deps:
	bash scripts/ensure-system-deps.sh

# the whole suite once per HTTP library: httpx, then httpx2 (AUTHPULSE_HTTP_BACKEND)
pytest: pytest-httpx pytest-httpx2

pytest-httpx: $(STAMP) system-deps
	AUTHPULSE_HTTP_BACKEND=httpx $(BIN)/python -m pytest

# (tests/test_benchmarks_smoke.py runs in the httpx pass only: the benchmarks pit
# authpulse against raw httpx and against peers bound to httpx, such as httpx-auth)
pytest-httpx2: $(STAMP) system-deps
	AUTHPULSE_HTTP_BACKEND=httpx2 $(BIN)/python -m pytest --ignore=tests/test_benchmarks_smoke.py

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
