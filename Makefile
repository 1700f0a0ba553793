VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_WORKERS ?= 2
export FNPLANE_TEST_POSTGRES_URL ?= postgresql://root@127.0.0.1:5432/test

.PHONY: install install-dev run test check bench migration clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -e .

install-dev: $(PY)
	$(PIP) install -q -e '.[dev]'

run: install
	$(VENV)/bin/fnplane up

test: install-dev
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

check: install-dev
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install-dev
	$(PY) -m bench.run

# Rewrite the initial migration after editing src/fnplane/control/db/tables.py.
migration: install-dev
	$(PY) scripts/regenerate-initial-migration.py
	$(VENV)/bin/ruff format -q src/fnplane/control/db/migrations/versions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
