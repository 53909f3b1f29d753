# Two commands do all the set-up: `make demo` and `make test` create .venv and install the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test dev validate bench clean

$(INSTALLED): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)  ## Run the whole pipeline for the last 7 days into data/anomalens.duckdb
	$(BIN)/anomalens run

test: $(INSTALLED)  ## Run the test suite
	$(BIN)/pytest

dev: $(INSTALLED)  ## Dagster UI and daemon on http://127.0.0.1:3000, same instance and DuckDB file as `make demo`
	$(BIN)/anomalens dev

validate: $(INSTALLED)  ## Load the code location the way `dagster dev` does
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: $(INSTALLED)  ## Print the benchmark tables
	$(BIN)/python -m benchmarks.simulate

clean:
	rm -rf data/anomalens.duckdb data/dagster_home
