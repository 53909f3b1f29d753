# Two commands do all the set-up: `make demo` and `make test` create .venv and install the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PORT ?= 3000

.PHONY: demo test chromium scaleout-services dev validate bench clean

# pip runs with -qq (errors only): its progress and setuptools' editable-install notice would bury
# the two lines that say what is happening.
$(INSTALLED): setup.py pyproject.toml
	@echo "Installing AnomaLens and its dependencies into $(VENV) (the first time takes a few minutes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -e '.[dev]'
	@touch $(INSTALLED)
	@echo "Installed into $(VENV)."

# The demo's settings turn the daily simulation schedule on (a real store's settings leave it off);
# an existing data/settings.yaml is the deployment's and is left as it is.
demo: $(INSTALLED)  ## Run the whole pipeline for the last 7 days into data/anomalens.duckdb
	@test -e data/settings.yaml || { mkdir -p data && printf 'simulation:\n  schedule: true\n' > data/settings.yaml \
	  && echo "Wrote data/settings.yaml (simulation.schedule: true, so \`make dev\` simulates each day)."; }
	$(BIN)/anomalens run

# Two passes: the modules that time nothing on three workers (one module per worker at a time; the
# suite waits on subprocesses enough that two cores keep three busy), then the `e2e` ones alone,
# since they wait on the daemon's ticks and the webserver within deadlines. Both passes always run;
# the target fails if either did.
test: $(INSTALLED) chromium scaleout-services  ## Run the test suite (the end-to-end test drives the UI in headless chromium)
	@status=0; \
	$(BIN)/pytest -m "not e2e" -n 3 --dist loadfile || status=$$?; \
	$(BIN)/pytest -m e2e || status=$$?; \
	exit $$status

# Checked on every `make test` rather than stamped, so a browser removed later is installed again.
chromium:  ## Install Debian's chromium if missing (as root, else through passwordless sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo="sudo -n"; fi; \
	  echo "Installing chromium (apt-get) for the end-to-end test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y chromium || { $$sudo apt-get update && $$sudo apt-get install -y chromium; }; \
	} || { echo "Could not install chromium: run 'sudo apt-get install -y chromium', then 'make test'." >&2; exit 1; }

# The scale-out test starts its own PostgreSQL and Redis (Debian's packages); `make demo` needs neither.
scaleout-services:  ## Install Debian's postgresql and redis-server if missing (as root, else through passwordless sudo)
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; } \
	  && command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo="sudo -n"; fi; \
	  echo "Installing postgresql and redis-server (apt-get) for the scale-out test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y postgresql redis-server || { $$sudo apt-get update && $$sudo apt-get install -y postgresql redis-server; }; \
	} || { echo "Could not install postgresql and redis-server: run 'sudo apt-get install -y postgresql redis-server', then 'make test'." >&2; exit 1; }

dev: $(INSTALLED)  ## Dagster UI and daemon on http://127.0.0.1:$(PORT) (`make dev PORT=4000`), same instance and DuckDB as `make demo`
	$(BIN)/anomalens dev --port $(PORT)

validate: $(INSTALLED)  ## Load the code location the way `dagster dev` does
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: $(INSTALLED)  ## Print the benchmark tables (several minutes; run with nothing else busy)
	$(BIN)/python -m benchmarks.simulate
	$(BIN)/python -m benchmarks.features
	$(BIN)/python -m benchmarks.detectors
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.readers
	$(BIN)/python -m benchmarks.unattended
	$(BIN)/python -m benchmarks.alerts
	$(BIN)/python -m benchmarks.incidents
	$(BIN)/python -m benchmarks.leave_one_kind_out
	$(BIN)/python -m benchmarks.generalisation
	$(BIN)/python -m benchmarks.scaleout

clean:
	rm -rf data/anomalens.duckdb data/dagster_home
