# fnplane: `make run` starts the platform, `make test` runs every test (see README.md).
# Only Python 3.11+ with pip/venv is needed; everything else is installed into .venv.

VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON ?= python3
PYTEST_WORKERS ?= 2
# extra flags for `fnplane up`, e.g. make run ARGS="--http-port 9090"
ARGS ?=
# the machine's PostgreSQL, so the database tests run on it as well as on SQLite
export FNPLANE_TEST_POSTGRES_URL ?= postgresql://root@127.0.0.1:5432/test
# directories that exist (bench/ and examples/ arrive with later issues)
LINT_PATHS := $(wildcard src tests bench examples)

.PHONY: install install-dev system-packages run test check bench soak fuzz faults migration settings-doc clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps: reinstall only when the dependencies change (the package itself is installed editable).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: system-packages $(VENV)/.installed

install-dev: system-packages $(VENV)/.installed-dev

# bubblewrap (the function sandbox) and podman, runc, debootstrap, docker-registry, apache2-utils (the
# container tests), installed with apt-get where we are root; else says what is missing
system-packages:
	@scripts/install-system-packages

run: install
	$(VENV)/bin/fnplane up --demo $(ARGS)

test: install-dev
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -p no:cacheprovider

check: install-dev
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install-dev
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk nghttp2-client >/dev/null 2>&1 \
		|| echo "wrk not installed: bench falls back to its asyncio client"
	$(PY) -m bench.run

# A steady open-loop load on a real `fnplane up` (pexec, direct and SSE calls) with the RSS and open files
# of every platform process read each minute; writes "## Soak" in docs/reliability.md (bench/soak.py).
# 30 requests/s in all is well within a 2-core host; SOAK_NOTE is a sentence for the doc.
SOAK_MINUTES ?= 30
SOAK_RATE ?= 30
SOAK_NOTE ?=
soak: install-dev
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) --note "$(SOAK_NOTE)"

# The large profile of the API fuzzing (`make test` runs it with 15 examples per operation and key):
# schemathesis over GET /v3/openapi of a real `fnplane up` (docs/reliability.md "API fuzzing")
FUZZ_EXAMPLES ?= 200
fuzz: install-dev
	FNPLANE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/e2e/test_api_fuzz.py

# The whole fault suite on four network-namespace hosts (root): every fault under load, the table written
# to docs/reliability.md "Faults" (`make test` runs a slice of it: tests/e2e/test_faults.py CI_SLICE)
faults: install-dev
	FNPLANE_FAULTS=all FNPLANE_FAULTS_REPORT=docs/reliability.md $(PY) -m pytest -p no:cacheprovider tests/e2e/test_faults.py

# Rewrite the initial migration after editing src/fnplane/control/db/tables.py.
migration: install-dev
	$(PY) scripts/regenerate-initial-migration.py
	$(VENV)/bin/ruff format -q src/fnplane/control/db/migrations/versions
	$(VENV)/bin/ruff check --fix -q src/fnplane/control/db/migrations/versions

# Rewrite docs/settings.md from the ...Settings classes (a unit test checks it lists every field).
settings-doc: install-dev
	$(PY) tests/unit/test_settings_doc.py > docs/settings.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
