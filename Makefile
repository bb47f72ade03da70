# The README's two commands: `make demo` and `make test`.
# Both create .venv on first use (Python 3.11+ and the PostgreSQL packages are
# all a fresh machine needs).

VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rlsctl demo

test: $(STAMP)
	$(VENV)/bin/ruff check rlsctl tests benchmarks
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
