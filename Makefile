# The two commands a new user needs: `make demo` and `make test`.
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env lint test test-fast demo kumar-cpu clean

env:
	@bash tools/setup_env.sh

test: env lint
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

lint: env
	.venv/bin/ruff check .

# Unit tests only (skips the slower end-to-end and real-data checks).
test-fast: env
	$(PYTHON) -m pytest tests -m "not slow" $(PYTEST_ARGS)

demo: env
	$(PYTHON) tools/demo.py $(DEMO_ARGS)

# A real-tissue model from ../shared/data on a CPU (README "Train on your
# own data on a CPU"): weights in work_dirs/kumar_cpu/.
kumar-cpu: env
	$(PYTHON) tools/kumar_cpu.py $(KUMAR_CPU_ARGS)

clean:
	rm -rf work_dirs/demo
