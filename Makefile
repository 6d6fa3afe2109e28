# The two commands: `make run` (whole service locally) and `make test` (every check).
# Both build .venv from the pinned requirements first; nothing else needs to be installed by hand.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

## make run: embedded AWS (moto), tables and keys from infra/, demo partners, chalice local.
run: $(STAMP)
	$(PY) -m scripts.dev $(ARGS)

## make test: lint, types, then every test.
test: lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
