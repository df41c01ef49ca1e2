# Two commands do all set-up: `make demo` and `make test`. Each creates .venv with the project
# installed (and its [dev] extras) when it is missing, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs clean bench gdal-venv

# The package is byte-compiled, as a wheel install is: an editable install has no .pyc files, and where
# PYTHONDONTWRITEBYTECODE is set every process would compile every module again (~0.1 s each).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m compileall -q lazymerge
	touch $(STAMP)

# A side venv for one check only (tests/output/test_geozarr.py): GDAL reading the Zarr output. The GDALs on
# PyPI newer than rasterio 1.4's 3.10 are cp312+ wheels (gdal-wheel 3.13, built without the Zarr driver;
# rasterio 1.5, whose GDAL 3.12 has it), so it runs on Python 3.12 while .venv stays on the project's
# Python. About 30 s and 250 MB. Without a Python 3.12 it is not made, and that test skips saying so.
GDAL_VENV := .venv-gdal
PYTHON_GDAL ?= $(shell for p in $(HOME)/.pyenv/versions/3.12*/bin/python3.12 python3.12; do \
	$$p -c 'import sys' 2>/dev/null && echo $$p && break; done)

$(GDAL_VENV)/.installed: Makefile
	@if [ -z "$(PYTHON_GDAL)" ]; then echo "no python3.12 found: $(GDAL_VENV) not made"; else \
	  set -e; $(PYTHON_GDAL) -m venv $(GDAL_VENV); \
	  $(GDAL_VENV)/bin/python -m pip install --quiet "gdal-wheel>=3.13" "rasterio>=1.5,<1.6"; \
	  touch $@; fi

gdal-venv: $(GDAL_VENV)/.installed

demo: $(STAMP)
	$(BIN)/lazymerge demo --out demo-output

# mypy (~40 s of CPU) runs beside the tests, which leave about one of two cores idle; its report follows
# theirs, and either failing fails the target.
test: $(STAMP) gdal-venv
	$(BIN)/ruff check .
	$(BIN)/mypy lazymerge > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q --durations=25; tests=$$?; \
	wait $$mypy; types=$$?; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$types -eq 0 ]
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
	rm -rf $(VENV) $(GDAL_VENV) demo-output site
