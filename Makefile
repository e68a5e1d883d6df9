# Two ways in: `make repro` builds the release, `make test` runs the tests.
# Both create .venv (with the pinned packages of requirements.lock) if needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False

.PHONY: repro test test-fast lint lock clean-venv bench quality

repro: $(VENV)/.installed
	$(BIN)/dvc repro
	$(BIN)/cqia summary

test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check --quiet .

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -n auto --dist loadfile -m unit $(PYTEST_ARGS)

# The cleaning rules' precision and recall on the evaluation set (tests/quality/; docs/rules.md).
quality: $(VENV)/.installed
	$(BIN)/python -m tests.quality.report

# The benchmark (bench/run.py, BENCHMARKS.md): `make bench` at 10k records takes about a minute;
# `make bench N=1000000` is the 1M run (about 2 GB raw, 30 GB of scratch in bench/out/).
N ?= 10000
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run --records $(N)

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

# Re-pin requirements.lock from requirements.in (maintainers only; needs the index).
lock: $(VENV)/.installed
	$(BIN)/uv pip compile -q requirements.in -o requirements.lock --python-version 3.11

clean-venv:
	rm -rf $(VENV)
