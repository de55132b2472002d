# The two commands a fresh machine needs: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pairsift-setup

.PHONY: setup demo test lint clean

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

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
