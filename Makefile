PY ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)

.PHONY: bench bench-quick test chaos

bench:
	$(PY) bench/run_all.py

bench-quick:
	$(PY) bench/run_all.py --quick

chaos:
	$(PY) -m kiosk.sim.chaos --sales 12 --seed 1

test:
	bash scripts/test.sh
