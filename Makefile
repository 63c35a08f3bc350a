PY ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)

.PHONY: bench bench-quick test test-fast lint chaos

bench:
	$(PY) bench/run_all.py

bench-quick:
	$(PY) bench/run_all.py --quick

chaos:
	$(PY) -m kiosk.sim.chaos --sales 12 --seed 1

# Everything (system packages, venv, lint, types, every test folder): what .ci/run runs.
test:
	bash scripts/test.sh

# The fast loop (needs the venv scripts/test.sh set up): lint and types as scripts/test.sh runs
# them, then the unit tests not marked slow (tests/conftest.py). Under 90 s on 2 cores.
test-fast: lint
	$(PY) -m pytest tests/unit -m "not slow" -q -n 2

# ruff, ruff format, mypy and the import contracts: the same list scripts/test.sh runs.
lint:
	bash scripts/lint.sh
