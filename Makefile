# The two commands a fresh machine needs: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pairsift-setup

.PHONY: setup demo test lint deploy-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/setup.sh
	bash deploy/setup.sh $(VENV)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/pairsift demo --output demo_out

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check pipeline transforms models benchmarks tests

# offline checks of deploy/: the scripts parse, and every Dataflow job graph builds with its
# name, worker image, Runner v2 and (pass 1 alone) the GPU
deploy-check: setup
	for script in deploy/*.sh; do bash -n "$$script" || exit 1; done
	$(PY) -m pytest -q tests/pipeline/test_dataflow_graph.py

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
