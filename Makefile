# The two commands: `make run` (whole service locally) and `make test` (every check).
# Both build .venv from the pinned requirements first; nothing else needs to be installed by hand.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov's pins conflict with ours (boto3): it has an environment of its own, built the same way.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: run test lint typecheck packaged cfn-lint checkov package pytest bench screenshots clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

## make run: embedded AWS (moto), tables and keys from infra/, demo partners, chalice local.
run: $(STAMP)
	$(PY) -m scripts.dev $(ARGS)

## make test: lint, types, then every test.
test: lint typecheck cfn-lint checkov pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

## make package STAGE=dev|prod: build/<stage>/sam.json (Chalice's SAM template merged with infra/'s
## tables, keys, alarms...) and build/<stage>/deployment.zip. Deploying it: docs/deploy.md.
package: $(STAMP)
	$(PY) -m infra.package --stage "$(STAGE)"
	$(VENV)/bin/cfn-lint --include-checks I -- build/$(STAGE)/sam.json

# Both deployable stages packaged (once per make run, for cfn-lint and checkov).
packaged: $(STAMP)
	$(PY) -m infra.package --stage dev
	$(PY) -m infra.package --stage prod

# Both packaged templates linted, informational checks included.
cfn-lint: packaged
	$(VENV)/bin/cfn-lint --include-checks I -- build/dev/sam.json build/prod/sam.json

# Both packaged templates scanned by checkov, offline: no failed check. A check that does not apply is
# skipped in the template itself, with its reason (infra/template.py CHECKOV_SKIPS; docs/deploy.md
# section 11). A failure prints the check's id and the resource, and fails the target.
checkov: packaged $(CHECKOV_STAMP)
	@status=0; for stage in dev prod; do \
	  echo "checkov: build/$$stage/sam.json"; \
	  CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --file build/$$stage/sam.json \
	    --framework cloudformation --skip-download --compact --quiet || status=1; \
	done; exit $$status

# Two workers (this machine and CI have 2 cores; much of the suite waits on launched stacks and
# the browser). A test file stays on one worker: module- and session-scoped stacks are started once.
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## make bench: cold start, CPU per flow vs the crypto floor, AWS calls and cost, memory, concurrency.
## Writes bench/RESULTS.md and bench/results.json (ratios measured in one run; never timed tests).
bench: $(STAMP)
	$(PY) -m bench.run $(ARGS)

## make screenshots: every page a resident can see (ja/en, 1280 and 390 px wide), rendered by the app
## in Chromium: build/screenshots/*.png and build/screenshots/index.html (axe-core's findings beside).
screenshots: $(STAMP)
	MYNA_GALLERY_DIR=build/screenshots $(PY) -m pytest -p no:cacheprovider -q tests/a11y/test_gallery.py
	@echo "open build/screenshots/index.html"

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .local .mypy_cache .ruff_cache .pytest_cache build
