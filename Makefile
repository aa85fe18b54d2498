# The two commands: `make serve` runs dockyard with its defaults, `make test` runs every suite (on SQLite
# and, at the same time, on PostgreSQL).
VENV    := .venv
PYTHON  := $(VENV)/bin/python
CONFIG  ?=
# Two workers: the suites are mostly waiting on servers and client subprocesses, and the machine has 2 cores.
# Four were slower on 2 busy cores (310 s against 267 s for ten integration modules that mostly wait).
# Three against two on twelve such modules (114 tests), alternated on a machine other runs loaded:
# 135 and 142 s against 165 and 106 s. On a quiet machine, whole `.ci/run` on a fresh checkout
# (2026-12-06): with 2 workers the SQLite pass had run 68% of its tests after 16 minutes, with 3 only 32%
# (load average 4-5 against 1-3): the suites' servers and clients need the cores more than they wait.
PYTEST_WORKERS ?= 2
# e.g. `make test PYTEST_ARGS='tests/e2e -k skopeo'`
PYTEST_ARGS ?= tests

.PHONY: serve venv test test-sqlite test-postgres run-sqlite run-postgres test-deps lint bench docs image images

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

# The container image (docs/container.md), from Debian's packages (a base made by mmdebstrap) and wheels
# built here (the base and the dependencies' wheels cached in ~/.cache/dockyard/images/ for every
# checkout, the rest under build/images/): build/images/dockyard.tar (`docker load -i` it), and
# dockyard:latest in your docker daemon when one runs. `make images` adds the images of the HA compose
# example (deploy/docker-compose.yml): build/images/ha.tar. Both need root without a daemon of yours.
image: venv
	$(PYTHON) scripts/build_images.py --set dockyard

images: venv
	$(PYTHON) scripts/build_images.py --set all

# Two passes, both always run (CI fails if either does):
# 1. SQLite: every test, each server and unit-test database a SQLite file (the embedded default; the
#    unit tests' are copies of one migrated file per worker, tests/support/sqlite_template.py);
# 2. PostgreSQL: the same tests again with DOCKYARD_TEST_DB=postgresql, every server and every unit test's
#    database (tests/support/postgres.py scratch_database_url) on a throwaway PostgreSQL the tests start,
#    minus the tests marked db_independent: no metadata DB (unit modules none of whose tests opens a
#    database, listed by file), SQLite on purpose, databases they pick themselves (parametrized over
#    both, or always PostgreSQL, e.g. tests/cluster), real clients (tests/e2e: the client's exchange is
#    the same on either database; tests/integration makes the same requests on PostgreSQL; one skopeo
#    flow stays as a canary), or the CLI over HTTP only (its routes run on PostgreSQL in the API tests).
#    tests/conftest.py lists them in DB_INDEPENDENT_PATHS (exceptions in DB_DEPENDENT_TESTS). Its test
#    databases are copies of one migrated template (tests/support/postgres.py migrated_template) on one
#    cluster for the whole run (tests/support/postgres_shared.py).
PG_MARKS ?= not db_independent
SQLITE_MARKS ?=
# `make test` moves the db_independent tests marked postgres_pass (databases of their own, or none:
# tests/conftest.py POSTGRES_PASS_PATHS) from the SQLite pass into the PostgreSQL pass, which ended ~4
# minutes earlier. Both passes run the test modules longest first (tests/support/module_order.py,
# tests/module_durations.json), so no long module runs alone at the end of a pass.
SPLIT_SQLITE_MARKS := not postgres_pass
SPLIT_PG_MARKS := not db_independent or postgres_pass
# The tests' Python processes keep their bytecode (.pyc, and pytest's assertion-rewritten test modules) in
# build/pycache, also where PYTHONDONTWRITEBYTECODE is set (some CI and agent shells): each test process
# compiled the whole suite and dockyard again, ~28 s of CPU per xdist worker against ~11 s from cache.
TEST_ENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/build/pycache
# On a fresh checkout build/pycache is empty, and the four test processes would each compile the whole
# suite, dockyard and its dependencies at once: one collection first compiles them once (four cold
# collections side by side took 86 s, one then four warm 69 s; errors show up in the passes).
# The two passes run at once: the suite mostly waits (servers, clients, sleeps), so the PostgreSQL pass
# fills cores the SQLite pass leaves idle. Its output follows the SQLite pass's.
# On the whole suite, the images tests/images needs (`make images`: ~3 minutes on a fresh checkout,
# mostly waiting on package downloads and disk) are built in the background from the start; those tests
# wait for that build (the build script's lock) instead of running it on one test worker at the end.
# A failed build fails them there, with its output.
# Both passes' test processes share one throwaway PostgreSQL (tests/support/postgres_shared.py), found by
# DOCKYARD_TEST_RUN_ID: one initdb and one template migration per run, not one per test process.
test: test-deps
	@status=0; log=$$(mktemp); export DOCKYARD_TEST_RUN_ID=make-test-$$$$; \
	if [ "$(PYTEST_ARGS)" = tests ]; then \
		mkdir -p build; $(PYTHON) scripts/build_images.py --set all > build/images-prebuild.log 2>&1 & \
		echo "== make test: collecting once, to compile the suite's bytecode for every test process"; \
		$(TEST_ENV) $(VENV)/bin/pytest --collect-only -q -p no:cacheprovider tests > /dev/null 2>&1 || true; \
	fi; \
	echo "== make test: SQLite and PostgreSQL passes at once"; \
	$(MAKE) --no-print-directory run-postgres PG_MARKS='$(SPLIT_PG_MARKS)' > $$log 2>&1 & postgres=$$!; \
	echo "== make test: SQLite pass"; \
	$(MAKE) --no-print-directory run-sqlite SQLITE_MARKS='$(SPLIT_SQLITE_MARKS)' || status=1; \
	wait $$postgres || status=1; \
	echo "== make test: PostgreSQL pass"; cat $$log; rm -f $$log; \
	exit $$status

test-sqlite: test-deps
	@$(MAKE) --no-print-directory run-sqlite

test-postgres: test-deps
	@$(MAKE) --no-print-directory run-postgres

# Without installing: `test` installs once, then runs both.
# pytest's status 5 (nothing selected: PYTEST_ARGS named only tests that `make test`'s other pass runs) is not
# a failure in a pass with marks.
run-sqlite:
	@$(TEST_ENV) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) $(if $(SQLITE_MARKS),-m "$(SQLITE_MARKS)"); \
	status=$$?; [ $$status -ne 5 ] || [ -z "$(SQLITE_MARKS)" ] || { echo "SQLite pass: no tests selected"; status=0; }; \
	exit $$status

run-postgres:
	@DOCKYARD_TEST_DB=postgresql $(TEST_ENV) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) -m "$(PG_MARKS)"; \
	status=$$?; [ $$status -ne 5 ] || { echo "PostgreSQL pass: no database-dependent tests selected"; status=0; }; \
	exit $$status

lint: test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Rewrite the generated parts of docs/ from the code: the configuration reference (from the settings model in
# src/dockyard/config) and the layer diagram (from pyproject.toml's import contracts). tests/unit/docs fails
# until this is run after a change to either.
docs: venv
	$(PYTHON) scripts/generate_docs.py

# dockyard vs distribution 2.8.2 and v3.1.1 (docs/benchmarks.md), on each backend in turn: local (SQLite + filesystem,
# about 8 minutes) and ha (throwaway PostgreSQL + Redis + SeaweedFS, about 12 minutes). Both always run.
# Then online GC (100k blobs in 20k manifests, half unreferenced, GC while manifest GETs go on) on each
# metadata DB in BENCH_GC_DBS, about 3 minutes each (docs/gc.md). Then the scale scenario against v3.1.1
# (BENCH_SCALE_REPOS repositories of one small image each plus one of 10,000 tags: random-repository
# manifest GET and blob HEAD, cross-repository pushes, start-up) on each metadata DB in BENCH_SCALE_DBS,
# about 15 minutes each at 50,000 (docs/benchmarks.md, "At scale"). Then `dockyard inventory` of a 5-layer
# image of real files, about 1 minute (BENCH_INVENTORY=no skips it; docs/security.md).
# e.g. `make bench BENCH_BACKENDS=ha BENCH_ARGS='--only ha-pull' BENCH_GC_DBS= BENCH_SCALE_DBS=`
BENCH_BACKENDS ?= local ha
BENCH_ARGS ?=
BENCH_GC_DBS ?= sqlite postgresql
BENCH_SCALE_DBS ?= sqlite postgresql
BENCH_SCALE_REPOS ?= 50000
BENCH_INVENTORY ?= yes
bench: test-deps
	@status=0; for backend in $(BENCH_BACKENDS); do \
	  echo "== make bench: --backend $$backend"; $(PYTHON) -m bench --backend $$backend $(BENCH_ARGS) || status=1; \
	done; for db in $(BENCH_GC_DBS); do \
	  echo "== make bench: --gc --gc-db $$db"; $(PYTHON) -m bench --gc --gc-db $$db || status=1; \
	done; for db in $(BENCH_SCALE_DBS); do \
	  echo "== make bench: --scale --scale-db $$db --scale-repos $(BENCH_SCALE_REPOS)"; \
	  $(PYTHON) -m bench --scale --scale-db $$db --scale-repos $(BENCH_SCALE_REPOS) || status=1; \
	done; if [ "$(BENCH_INVENTORY)" = yes ]; then \
	  echo "== make bench: inventory"; $(PYTHON) -m bench.inventory || status=1; \
	fi; exit $$status
