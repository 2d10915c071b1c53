# Two commands a user needs: `make test` and `make demo`. Both build their own virtual environment
# from pyproject.toml the first time (about 2 minutes and 6 GB: pip resolves torch and torchvision
# together from the package registry).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Unit tests, then every notebook in the toy profile under nbval (the current environment's kernel).
test: $(STAMP)
	$(PY) -m pytest -q tests
	MPLBACKEND=Agg EBSEG_PROFILE=toy $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 notebooks

# The toy world end to end on a CPU: train on the seen classes (with and without SSC), evaluate every
# way of classifying the masks on all classes, write toyworld_report/ (a few minutes on 2 cores).
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/ebseg-lite toyworld demo --out toyworld_report

clean:
	rm -rf demo_out toyworld_report .pytest_cache
