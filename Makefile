# The two commands that matter: `make demo` and `make test`. Both set up what
# they need first (virtualenvs, pinned packages, system packages, emulators).
PY := .venv/bin/python
BENCH ?=
PYTEST_ARGS ?=

.PHONY: setup test demo demo-serve bench stack clean

setup:
	@bash devstack/setup.sh

test: setup
	@bash devstack/run_tests.sh $(PYTEST_ARGS)

demo: setup
	@$(PY) -m devstack.demo

demo-serve: setup
	@$(PY) -m devstack.demo --serve

bench: setup
	@$(PY) -m devstack.bench $(BENCH)

stack: setup
	@$(PY) -m devstack.stack

clean:
	rm -rf .venv .venv-bq .cache out
