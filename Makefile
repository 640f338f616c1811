# The two commands: `make run` (demo app) and `make test` (whole suite). See README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
# The embedded default: SQLite file, DEBUG on (demo secret key). Never for production.
DEMO_ENV := DEBUG=1
# Celery: plain `make run` runs tasks eagerly in-process (no broker, no worker). `make worker`, `make beat`,
# `make run-worker` and `make run WITH_WORKER=1` use this Redis broker instead (CELERY_BROKER_URL overrides it).
BROKER_URL := $(or $(CELERY_BROKER_URL),redis://127.0.0.1:6379/0)
WORKER_ENV := $(DEMO_ENV) CELERY_BROKER_URL=$(BROKER_URL)
RUN_ENV := $(if $(WITH_WORKER),$(WORKER_ENV),$(DEMO_ENV))
CELERY_CONCURRENCY ?= 2
PYTEST_ARGS ?=

.PHONY: install install-dev run run-worker broker-check demo-data test test-fast faults bench load lint format worker beat migrate clean

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, this is {sys.version}"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstalls only when a requirements file changed since the last install.
$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(DEMO_ENV) $(PY) manage.py migrate --no-input

demo-data: migrate
	$(DEMO_ENV) $(PY) manage.py seed_demo --if-empty --recompute
	$(DEMO_ENV) $(PY) manage.py seed_predictive_segments --if-no-rule-segments
	$(DEMO_ENV) $(PY) manage.py seed_demo_experiment --if-none

# Creates the demo operator only when missing (a changed password and the browser's session survive).
run: demo-data $(if $(WITH_WORKER),broker-check)
	@$(DEMO_ENV) $(PY) manage.py create_demo_operator
	@echo "Serving the admin on http://$(HOST):$(PORT)/admin/  (API docs: http://$(HOST):$(PORT)/api/docs/)"
	@echo "$(if $(or $(WITH_WORKER),$(CELERY_BROKER_URL)),Tasks go to the broker $(BROKER_URL): run \`make worker\` and \`make beat\` beside this.,Tasks run in-process; the schedule (beat) does not run: \`make run-worker\` adds a worker and beat.)"
	$(RUN_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

# The demo with a real Celery worker and beat (scheduled runs, campaign completion, attribution), all three
# in this terminal; Ctrl-C stops them together. Needs Redis at BROKER_URL.
run-worker: demo-data broker-check
	@$(DEMO_ENV) $(PY) manage.py create_demo_operator
	@echo "Serving the admin on http://$(HOST):$(PORT)/admin/ with a worker and beat on $(BROKER_URL)"
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT INT TERM; \
	$(WORKER_ENV) $(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY) & \
	$(WORKER_ENV) $(VENV)/bin/celery -A config beat --loglevel=INFO & \
	$(WORKER_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

broker-check: install
	@$(PY) -c 'import sys, redis; url = sys.argv[1]; redis.Redis.from_url(url, socket_connect_timeout=2).ping()' "$(BROKER_URL)" 2>/dev/null \
		|| { echo "No Redis answers at $(BROKER_URL): start it (redis-server) or set CELERY_BROKER_URL." >&2; exit 1; }

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install-dev
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Only the fault tests (docs/reliability.md); `make test` runs them too. The killed-worker and
# Redis-restart ones need PostgreSQL and CELERY_BROKER_URL, as .ci/run provides.
faults: install-dev
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

# ruff (lint and format check) and import-linter (the import contracts of docs/architecture.md); CI runs it.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Rewrites the code in the project's format and applies ruff's safe fixes.
format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install-dev
	$(PY) bench/run.py

# Load test (issue #7, docs/benchmarks.md "Load"): the app under gunicorn (gunicorn.conf.py) on a fresh
# PostgreSQL database `marketing_load`; for 60 s, recommendations at 500 requests/s, event batches
# 4 times a second and a recomputation, all at once. Figures in bench/results/load.{json,md}; fails
# when a target is missed (p99 >= 50 ms, any error, an accepted event missing). About 3 minutes.
LOAD_ARGS ?=
load: install-dev
	$(PY) bench/load.py $(LOAD_ARGS)

# Beside `make run WITH_WORKER=1` (start that first: it migrates and seeds), on the same embedded default.
# In production run `celery -A config worker` / `celery -A config beat` with the real environment instead.
worker: broker-check
	$(WORKER_ENV) $(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY)

beat: broker-check
	$(WORKER_ENV) $(VENV)/bin/celery -A config beat --loglevel=INFO

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
