# Tandem: `make run` (embedded Tandem with a demo project) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export DATABASE_URL_TEST ?= postgres://postgres@127.0.0.1:5432/tandem
export REDIS_URL_TEST ?= redis://127.0.0.1:6379/15

.PHONY: run test lint bench install services clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $$(scripts/find-python) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	touch $@

install: $(VENV)/.installed

run: install
	scripts/run-embedded

services:
	scripts/services

test: install services
	DATABASE_URL=$(DATABASE_URL_TEST) REDIS_URL=$(REDIS_URL_TEST) CELERY_BROKER_URL=$(REDIS_URL_TEST) \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install services
	DATABASE_URL=$(DATABASE_URL_TEST) $(PY) bench/run_all.py

clean:
	rm -rf $(VENV) var staticfiles
