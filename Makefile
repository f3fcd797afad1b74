# The two commands a newcomer types: `make demo` and `make test`.
# Each builds its own virtual environment in .venv from setup.cfg; nothing else is assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
# mypy covers the whole package; the sandbox (test and demo infrastructure) is checked too.
CORE = limefort limefort_sandbox

.PHONY: demo test lint bench floors clean promtool

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# fortpyx (contract tests) pins requests 2.31.0, older than limefort's floor: its models
	# need only pydantic (in the test extra), so it goes in without its pins.
	$(BIN)/python -m pip install -q --no-deps fortpyx==0.0.1a1
	touch $@

demo: $(BIN)/.installed
	$(BIN)/limefort demo

lint: $(BIN)/.installed
	$(BIN)/ruff check limefort limefort_sandbox tests bench .ci
	$(BIN)/ruff format --check limefort limefort_sandbox tests bench .ci
	$(BIN)/mypy $(CORE)

# promtool validates and unit-tests deploy/monitoring's alerting rules (tests/test_monitoring.py).
# It comes from Debian's `prometheus` package; installed here when missing (CI runs as root).
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian's prometheus package)"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "make test needs promtool: sudo apt-get install prometheus (or put promtool on PATH)"; \
	    exit 1; \
	  fi; }

test: lint promtool
	# Four workers even on CI's 2 cores: most of the suite's time is waiting (rate windows,
	# timeouts, child processes), not computing. Every test owns its tmp_path, ports, sandboxes.
	$(BIN)/python -m pytest -q -n 4

# limefort built on setup.cfg's floors alone (no pip in its venv, as in the image), the chained
# gzip bomb replayed against it and one demo run: the floors are promises, tested here.
floors:
	$(PYTHON) .ci/floors.py

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .venv-floors build *.egg-info .pytest_cache .mypy_cache .ruff_cache
