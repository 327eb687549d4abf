# Two commands: `make run` and `make test`. Both create .venv if missing and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.margincal-installed

.PHONY: run test fuzz faults install lint bench docs docs-tables serve clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/margincal run

# ruff, the import contract of .importlinter (layers, no cycles; docs/architecture.md), then mypy
# (settings in pyproject.toml [tool.mypy]; zero errors on src/)
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench docs
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src/margincal

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench docs
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src/margincal
	$(PY) -m pytest -q -n 2 ; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

# The CLI fuzz suite at the issue-16 figure: 1,000 malformed cases per command (`make test` runs 120 per command).
# docs/make_reliability.py runs it the same way and writes its counts and timings to docs/reliability.md.
fuzz: $(STAMP)
	MARGINCAL_FUZZ_EXAMPLES=$${MARGINCAL_FUZZ_EXAMPLES:-1000} $(PY) -m pytest -q -n 2 tests/ops/test_cli_fuzz.py

# The fault-injection loops (SIGKILL during ingest and publish, concurrent writers, a read while serve holds the
# store) at 12 kills per loop; writes their counts to docs/reliability.md (`make test` runs 2-3 kills each).
faults: $(STAMP)
	$(PY) docs/make_reliability.py --part faults --kills 12

# risk_models in quick mode: its full run refits every ML-fitted model on every day (about 25 min of CPU)
bench: $(STAMP)
	$(PY) bench/run_all.py --quick-for risk_models

# Print the doc tables of docs/new_listings.md, docs/vol_surfaces.md (and its figures) and
# docs/vol_forecasting.md from the scripts under docs/ (the vol forecasting run takes minutes).
docs-tables: $(STAMP)
	$(PY) docs/make_new_listings.py
	$(PY) docs/make_vol_surfaces.py --figures docs/figures
	$(PY) docs/make_vol_forecasting.py --start 2021-01-01 --refit-every 30

# figures in docs/ come from code: regenerate them (validation.md runs the backtests, a few minutes)
docs: $(STAMP)
	$(PY) docs/make_validation.py
	$(PY) docs/make_venue_tables.py --write
	$(PY) docs/make_margin_v2.py
	$(PY) docs/cascade_tables.py
	$(PY) docs/monitoring_tables.py --write

serve: $(STAMP)
	$(VENV)/bin/margincal serve

clean:
	rm -rf $(VENV) margincal.duckdb margincal.duckdb.wal reports/ .pytest_cache
