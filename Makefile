# Two commands from a fresh clone: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-plain test-slow test-cluster lint typecheck unit broker tools venv bench clean cluster cluster-down cluster-status

# Before creating the venv: Python 3.11 or newer, and a working `python3 -m venv` (Debian/Ubuntu: python3-venv).
define CREATE_VENV
if [ -x $(BIN)/python ]; then \
  $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' && $(BIN)/python -m pip --version >/dev/null 2>&1 || { \
    echo "make: $(VENV) is unusable (needs Python 3.11 or newer with pip); remove it with 'rm -rf $(VENV)' and rerun make" >&2; \
    exit 1; }; \
  exit 0; \
fi; \
command -v $(PYTHON) >/dev/null || { \
  echo "make: $(PYTHON) not found; install Python 3.11 or newer, e.g.: sudo apt-get install python3 python3-venv" >&2; \
  exit 1; }; \
$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
  echo "make: mqspec needs Python 3.11 or newer, but $(PYTHON) is $$($(PYTHON) -V 2>&1)." >&2; \
  echo "make: install a newer one (e.g. sudo apt-get install python3.11 python3.11-venv) and run: make PYTHON=python3.11 ..." >&2; \
  exit 1; }; \
out=$$($(PYTHON) -m venv $(VENV) 2>&1) || { \
  rm -rf $(VENV); \
  echo "$$out" >&2; \
  echo "make: '$(PYTHON) -m venv' does not work; on Debian/Ubuntu install it with: sudo apt-get install python3-venv" >&2; \
  echo "make: (for another Python version, install its pythonX.Y-venv package)" >&2; \
  exit 1; }
endef

$(STAMP): pyproject.toml
	@$(CREATE_VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# bytecode, as a wheel install writes it: with PYTHONDONTWRITEBYTECODE set, an editable install would
	@# otherwise compile every module from source on every run (0.1 s of each command)
	$(BIN)/python -m compileall -q mqspec
	@touch $(STAMP)

venv: $(STAMP)

broker:
	@scripts/ensure-broker

# Debian's chromium (the headless check of the HTML report), graphviz, nftables (the loss fault of make test-cluster)
# and iptables (its delay fault where the kernel has no netem).
tools:
	@scripts/ensure-tools

# Private RabbitMQ nodes joined into one cluster, beside the broker above (docs/cluster.md).
# make cluster NODES=5 ARGS=--netns
NODES ?= 3
cluster:
	@scripts/local-cluster up --nodes $(NODES) $(ARGS)

cluster-status:
	@scripts/local-cluster status

cluster-down:
	@scripts/local-cluster down

demo: venv broker
	$(BIN)/mqspec validate scenarios/*.yaml
	$(BIN)/mqspec apply scenarios/01-hello-world.yaml

lint: venv
	$(BIN)/ruff check mqspec tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest -q -m "not broker"

# the workload tests again on pika's own publish and delivery code (the fallback of mqspec/workload/frames.py)
WORKLOAD_TESTS := tests/test_workload_broker.py tests/test_run_safety.py

# make test: everything but the long suites (under 10 minutes here). .ci/run adds make test-slow.
test: venv broker tools lint
	$(BIN)/pytest -q -m "not slow and not cluster"
	@$(MAKE) --no-print-directory test-plain

# 100k-message migrations with SIGKILLs, reconnect counting against the broker's statistics, the Dask engine
test-slow: venv broker tools
	$(BIN)/pytest -q -m slow

# node kills, partitions (network namespaces), alarms, delay and loss on a private 3-node cluster the suite starts,
# settled before each test (docs/cluster.md); about 4-4.5 minutes here (5-6 when settle reboots a stuck node); in .ci/run
test-cluster: venv broker tools
	$(BIN)/pytest -q -m cluster

test-plain: venv broker
	MQSPEC_PLAIN_PIKA=1 $(BIN)/pytest -q $(WORKLOAD_TESTS)

bench: venv broker
	$(BIN)/python benchmarks/run_workload.py
	$(BIN)/python benchmarks/topology_apply.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
