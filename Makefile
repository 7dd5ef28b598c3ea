# The two commands that matter: `make run` (demo server) and `make test` (whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
GATEWAY_PORT ?= 8025

.PHONY: run test install install-dev lint format migrations-check bench-sts clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Create the venv, install, migrate, seed demo data if the database is empty, serve on $(PORT).
run: install
	@PORT=$(PORT) GATEWAY_PORT=$(GATEWAY_PORT) VENV=$(VENV) ./scripts/run.sh

## Install what the tests need and run the whole suite (PostgreSQL when DATABASE_URL is set).
test: install-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

APPS := accounts audit campaigns care dashboard kplc_sts meters partners rehearsal sms tokens manage.py

## ruff (lint and format), mypy over the apps (django-stubs, DRF plugin) and strict on the STS engine.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(APPS)
	$(VENV)/bin/mypy --strict --ignore-missing-imports tokens/sts

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Fails when a model change has no migration.
migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
