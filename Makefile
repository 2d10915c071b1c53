# Two commands a user needs: `make test` and `make demo`. Both build their own virtual environment
# from pyproject.toml the first time (about 3 minutes and 6 GB: pip resolves torch and torchvision
# together from the package registry, plus JupyterLab). `make lab` opens the notebooks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lab chromium demo demo-long clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Unit tests (the browser tests among them: JupyterLab in the system Chromium, see tests/browser/), then
# every notebook in the toy profile under nbval (the current environment's kernel).
test: $(STAMP)
	$(PY) -m pytest -q tests
	MPLBACKEND=Agg EBSEG_PROFILE=toy $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 notebooks

# JupyterLab from .venv on the notebooks (the toy profile on a CPU unless EBSEG_PROFILE says otherwise).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# The system Chromium that the browser tests drive (Debian/Ubuntu; needs root or sudo). Nothing is
# downloaded by Playwright itself.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium || command -v chromium-browser)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	else \
		echo "no chromium and no apt-get: install Chromium yourself or set EBSEG_CHROMIUM=/path/to/chrome" >&2; exit 1; \
	fi

# The toy world end to end on a CPU: train on the seen classes (with and without SSC), evaluate every
# way of classifying the masks on all classes, write toyworld_report/ (about 8 minutes on 2 cores).
demo: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 $(VENV)/bin/ebseg-lite toyworld demo --out toyworld_report

# The same with three times the training (1500 steps a model, about 25 minutes on 2 cores): how far A,
# trained on the seen masks, and the balance go with longer training (README, toy world, reason (2)).
demo-long: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 $(VENV)/bin/ebseg-lite toyworld demo --steps 1500 --out toyworld_report_1500

clean:
	rm -rf demo_out toyworld_report toyworld_report_1500 toyworld_ablation toyworld_length build/browser .pytest_cache
