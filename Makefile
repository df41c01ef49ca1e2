# Two commands do all set-up: `make demo` and `make test`. Each creates .venv with the project
# installed (and its [dev] extras) when it is missing, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lazymerge demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .
	$(BIN)/mypy lazymerge
	$(MAKE) docs

# the docs site into site/; --strict fails on any warning (a broken link, a docstring griffe cannot parse)
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# Every number the README quotes, rerun on the current commit: one script per table, each results file
# starting with the commit, command, machine and date (benchmarks/provenance.py). Takes about 90 minutes
# on 2 cores (plan_scale at 100k sources alone ~60 min: drop 100000 from SCALES for a quicker run).
SCALES ?= 1000 10000 100000
RESULTS := benchmarks/results
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m benchmarks.kernel | tee $(RESULTS)/kernel.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.mosaic --repeat 2 | tee $(RESULTS)/mosaic.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.executors | tee $(RESULTS)/executors.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.memory | tee $(RESULTS)/memory.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.chunk_io | tee $(RESULTS)/chunk_io.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.lanczos_gdal | tee $(RESULTS)/lanczos_gdal.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.plan_accuracy | tee $(RESULTS)/plan_accuracy.txt
	PYTHONPATH=. $(BIN)/python -m benchmarks.plan_scale --scales $(SCALES) | tee $(RESULTS)/plan_scale.txt

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo-output site
