# openbailian — the two commands of the README, and a few more.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: screenshots serve test test-fast test-postgres install bench lint typecheck clean

$(BIN)/openbailian: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# OCR moved to rapidocr on headless OpenCV; both OpenCV builds write cv2/, so the old one goes first.
	@$(BIN)/pip uninstall --yes --quiet opencv-python rapidocr-onnxruntime 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/openbailian

## Start the server with the bundled local model, a demo app and a key (printed).
serve: install
	$(BIN)/openbailian serve --demo

## mypy (strict); the fast suite on SQLite in JOBS processes (pytest-xdist); the slow real-model
## tests one at a time (on PostgreSQL when OPENBAILIAN_TEST_POSTGRES_URL is set: .ci/run sets it, and
## the multi-process tests need it); then the fast suite again on PostgreSQL.
JOBS ?= 2
FAST_SUITE = $(BIN)/pytest -q -m "not slow" -n $(JOBS) $(PYTEST_ARGS)
test: install typecheck
	env -u OPENBAILIAN_TEST_POSTGRES_URL $(FAST_SUITE)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)
	@if [ -n "$$OPENBAILIAN_TEST_POSTGRES_URL" ]; then $(MAKE) --no-print-directory test-postgres; fi

test-postgres: install
	@test -n "$$OPENBAILIAN_TEST_POSTGRES_URL" || { echo "set OPENBAILIAN_TEST_POSTGRES_URL"; exit 2; }
	$(FAST_SUITE)

## Everything but the slow real-model tests.
test-fast: install
	$(FAST_SUITE)

bench: install
	$(BIN)/python bench/core.py

## mypy, strict for openbailian/ (config in pyproject.toml); the first step of `make test`.
typecheck: install
	$(BIN)/mypy

lint: install
	$(BIN)/pip install --quiet ruff==0.14.0
	$(BIN)/ruff check openbailian tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

## Refresh docs/console/*.png from a run of the console tests.
screenshots: install
	OPENBAILIAN_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/console
