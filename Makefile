# Two commands from a fresh clone: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit broker venv bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

broker:
	@scripts/ensure-broker

demo: venv broker
	$(BIN)/mqspec validate scenarios/*.yaml
	$(BIN)/mqspec apply scenarios/01-hello-world.yaml

lint: venv
	$(BIN)/ruff check mqspec tests benchmarks
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q -m "not broker"

test: venv broker lint
	$(BIN)/pytest -q

bench: venv broker
	$(BIN)/python benchmarks/run_workload.py
	$(BIN)/python benchmarks/topology_apply.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
