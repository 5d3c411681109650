# The commands everyone runs. `make help` lists them.
PY := .venv/bin/python

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

venv:  ## create .venv and install riskbrain with its test tools
	python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]'

train:  ## the default job: synthetic SME data, MLP, registered in MLflow
	$(PY) -m jobs.train

test:  ## every test (unit and integration)
	$(PY) -m pytest

test-fast:  ## unit tests only
	$(PY) -m pytest -m "not slow"

lint:  ## ruff lint and format check
	.venv/bin/ruff check . && .venv/bin/ruff format --check training jobs

bench:  ## benchmarks: loop, data path, gradient sync, scaling, Ray vs MPI (docs/benchmarks.md)
	$(PY) -m benchmarks.run

sweep:  ## the smoke sweep (6 tiny trials)
	$(PY) -m jobs.sweep sweep=smoke

ui:  ## the MLflow UI on the local store, at http://127.0.0.1:5000
	.venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db

.PHONY: help venv train test test-fast lint bench sweep ui
