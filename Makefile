# Quick start: `make run` serves http://127.0.0.1:8000/signup; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench install clean messages

$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements-dev.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/signup serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider --durations=25

test: lint typecheck pytest

# The template catalogue of every message, merged into each shipped language's catalogue
# (new messages come in untranslated: tests/unit/test_translations.py lists them).
messages: $(STAMP)
	$(BIN)/python -m signup.testing.messages > src/signup/locale/signup.pot
	$(BIN)/pybabel update --no-wrap -N -i src/signup/locale/signup.pot -d src/signup/locale -D signup

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench
	# The Auth0 event hook against a bare endpoint, and row 1 with the proof of work on/off.
	$(BIN)/python -m bench.hooks
	$(BIN)/python -m bench.challenge

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
