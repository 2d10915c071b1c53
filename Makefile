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

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/ebseg-lite demo --out demo_out

clean:
	rm -rf demo_out .pytest_cache
