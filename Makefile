# The two commands: `make serve` runs dockyard with its defaults, `make test` runs every suite.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
CONFIG  ?=
# Two workers: the suites are mostly waiting on servers and client subprocesses, and the machine has 2 cores.
PYTEST_WORKERS ?= 2
# e.g. `make test PYTEST_ARGS='tests/e2e -k skopeo'`
PYTEST_ARGS ?= tests

.PHONY: serve venv test test-postgres test-deps lint bench

# Runtime dependencies and the package only (no dev tools), re-installed when pyproject.toml changes.
$(PYTHON):
	python3 -m venv $(VENV)

$(VENV)/.runtime-installed: pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -q -e .
	touch $@

venv: $(VENV)/.runtime-installed

# Defaults: 0.0.0.0:5000, data in ./data. `make serve CONFIG=my.yml` passes --config.
serve: venv
	$(VENV)/bin/dockyard serve $(if $(CONFIG),--config $(CONFIG))

test-deps:
	bash scripts/install-test-deps.sh

test: test-deps
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The suites that run servers (and the account services), again on PostgreSQL: every server gets its own
# database in a throwaway cluster the tests start (tests/support/postgres.py).
PG_PYTEST_ARGS ?= tests/integration tests/e2e tests/unit/accounts
test-postgres: test-deps
	DOCKYARD_TEST_DB=postgresql $(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PG_PYTEST_ARGS)

lint: test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: test-deps
	$(PYTHON) -m bench
