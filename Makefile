# imagegen-queue: `make demo` runs the pipeline end to end, `make test` runs the suite.
# Both create .venv and install what they need; nothing else is required but Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-sqlite test-postgres test-chaos lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imagegen demo

# The whole suite on SQLite; then, when TEST_DATABASE_URL points at PostgreSQL, the tests marked `db`
# again on it (.ci/run sets it). `db` marks tests that run database-specific SQL: every test in
# tests/store and tests/pipeline (tests/conftest.py adds it), and any test elsewhere that says so. Other
# tests touch a database too (the API tier's own SQLite files, the system, deploy and bench stacks) but
# through the code those tiers already cover, so they run once; marking them would rerun the heavy
# system stacks for no new SQL. Tests mostly wait on real processes, so a few xdist workers (each with
# its own private Redis, database and pipeline) cut the wall time even on 2 cores.
test: $(STAMP)
	env -u TEST_DATABASE_URL $(BIN)/pytest -q -n 3
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "--- tests marked db on PostgreSQL ($$TEST_DATABASE_URL)"; \
		$(BIN)/pytest -q -n 2 -m db tests; \
	fi

test-chaos: $(STAMP)
	$(BIN)/pytest -q -m chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/polling.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
