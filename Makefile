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

.PHONY: install install-dev system-packages run test check bench migration settings-doc clean

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

# bubblewrap (the function sandbox), installed with apt-get where we are root; else says what is missing
system-packages:
	@scripts/install-system-packages

run: install
	$(VENV)/bin/fnplane up $(ARGS)

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

# Rewrite the initial migration after editing src/fnplane/control/db/tables.py.
migration: install-dev
	$(PY) scripts/regenerate-initial-migration.py
	$(VENV)/bin/ruff check --fix -q src/fnplane/control/db/migrations/versions
	$(VENV)/bin/ruff format -q src/fnplane/control/db/migrations/versions

# Rewrite docs/settings.md from the ...Settings classes (a unit test checks it lists every field).
settings-doc: install-dev
	$(PY) tests/unit/test_settings_doc.py > docs/settings.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
