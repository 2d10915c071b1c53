"""Fixtures of the browser tests: a time budget, the artefact folder, JupyterLab and a Chromium page.

What is missing fails with what to install (never a silent skip); ``EBSEG_SKIP_BROWSER=1`` skips on
purpose. The helpers live next to this file (``lab_server``, ``lab_page``), found through ``sys.path``
whatever pytest's import mode.
"""
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_page import INIT_JS  # noqa: E402
from lab_server import CHROMIUM_ARGS, INSTALL_HINT, LabServer, find_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("00_tour.ipynb", "09_balancing_explorer.ipynb")


class Budget:
    """Seconds left for the whole module; every wait takes the smaller of its own limit and this."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def __call__(self, limit: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            pytest.fail("the browser tests ran out of their time budget (EBSEG_BROWSER_BUDGET seconds)")
        return min(limit, left)


@pytest.fixture(scope="module")
def budget():
    return Budget(float(os.environ.get("EBSEG_BROWSER_BUDGET", "600")))


@pytest.fixture(scope="module")
def artefacts() -> Path:
    out = Path(os.environ.get("EBSEG_BROWSER_ARTEFACTS", REPO / "build" / "browser"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory, budget):
    """JupyterLab from this interpreter's environment, serving copies of the notebooks (the repository's
    stay without outputs), kernels in the toy profile and offline; stopped whatever happens."""
    if os.environ.get("EBSEG_SKIP_BROWSER") == "1":
        pytest.skip("EBSEG_SKIP_BROWSER=1")
    for module, what in (("jupyterlab", "JupyterLab"), ("playwright", "Playwright's Python package")):
        try:
            __import__(module)
        except ImportError:
            pytest.fail(f"{what} is missing from {sys.prefix}: pip install -e '.[dev]' (or `make setup`)")
    if find_chromium() is None:
        pytest.fail("no Chromium found. " + INSTALL_HINT)
    tmp = tmp_path_factory.mktemp("jupyterlab")
    (tmp / "notebooks").mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, tmp / "notebooks" / name)
    env = {"EBSEG_PROFILE": "toy", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    server = LabServer(tmp / "notebooks", tmp / "jupyter", env=env)
    try:
        server.start(timeout=budget(120))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    """A page of the system Chromium (headless, a new empty profile) driven by Playwright."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=find_chromium(), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            pg = context.new_page()
            pg.add_init_script(INIT_JS)
            yield pg
        finally:
            context.close()
