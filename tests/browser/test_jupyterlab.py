"""The notebooks as a user opens them: JupyterLab from this environment, in a real (headless) Chromium.

For notebooks 00 and 09: JupyterLab's Run All, then no output may show a traceback or the widget
manager's "Error displaying widget". In 09's balancing explorer a slider is dragged with the mouse and a
vocabulary typed and applied; each must re-render the explorer's segmentation figure (its PNG data must
differ from before). Screenshots go to ``build/browser/`` (or ``$EBSEG_BROWSER_ARTEFACTS``).

Needs the system Chromium (``make chromium`` or ``apt-get install chromium``; ``bash .ci/run`` installs
it), and Playwright's Python package and JupyterLab (both in ``pip install -e '.[dev]'``); see
``conftest.py`` for the fixtures, the time budget and what happens when something is missing.
"""
import re
import time
from pathlib import Path

import pytest
from lab_page import open_notebook, problems, run_all

pytestmark = pytest.mark.browser



def toy_vocabulary():
    """Five toy-world names, seen and new ones, and how many of them are seen."""
    from ebseg_lite.toyworld.world import ToyWorld
    world = ToyWorld()
    seen = dict(zip(world.class_names, world.seen))
    things = [n for n in world.class_names if n not in ("grass", "water", "brick", "sand", "wood", "gravel")]
    names = ["sand", "wood", next(n for n in things if seen[n]), next(n for n in things if not seen[n]), "grass"]
    return names, sum(seen[n] for n in names)


def open_and_run(page, lab, budget, name: str, artefacts: Path):
    open_notebook(page, lab.lab_url(name), name, timeout=budget(180))
    state = run_all(page, name, timeout=budget(420))
    page.screenshot(path=str(artefacts / f"{Path(name).stem}_run_all.png"))
    found = problems(state)
    assert not found, f"{name}:\n" + "\n".join(found) + f"\n--- server log ---\n{lab.log_tail()}"
    assert all(isinstance(c, int) for c in state["counts"]), f"{name}: cells left unexecuted: {state['counts']}"
    return state


def test_tour_runs_clean_in_jupyterlab(page, lab, budget, artefacts):
    state = open_and_run(page, lab, budget, "00_tour.ipynb", artefacts)
    figures = sum(o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
                  for outs in state["outputs"] for o in outs)
    assert figures >= 4, f"00_tour drew {figures} figures as PNG (expected the grids, CLIP bars and overlays)"
    assert page.locator(".jp-OutputArea-output img").count() == figures  # every one of them on the page


def _explorer_png(ui, budget, before=None, limit: float = 90.0) -> str:
    """The explorer figure's ``src`` (a PNG data URL), once it differs from ``before``."""
    end = time.monotonic() + budget(limit)
    while time.monotonic() < end:
        img = ui.locator("img")
        src = img.first.get_attribute("src") if img.count() == 1 else None
        if src and src.startswith("data:image/png") and src != before:
            return src
        time.sleep(0.25)
    raise AssertionError("the explorer figure was not re-rendered" if before else "no explorer figure on the page")


def test_balancing_explorer_widgets_in_browser(page, lab, budget, artefacts):
    from playwright.sync_api import expect
    name = "09_balancing_explorer.ipynb"
    open_and_run(page, lab, budget, name, artefacts)
    ui = page.locator(".jp-OutputArea-output > .widget-vbox").filter(has=page.locator(".widget-slider"))
    assert ui.count() == 1, "the balancing explorer's widgets are not on the page"
    ui.scroll_into_view_if_needed()
    assert ui.locator(".widget-slider").count() == 11  # 6 geometric, 3 arithmetic, 2 pixel sliders
    first = _explorer_png(ui, budget)
    ui.screenshot(path=str(artefacts / "09_explorer_before.png"))

    # drag "new D" (the model's default after the notebook's reset) to 0.9 with the mouse, as a user would
    slider = ui.locator(".widget-slider").filter(has=page.locator("label", has_text=re.compile(r"^new D$")))
    readout = slider.locator(".widget-readout")
    start = readout.inner_text()
    assert abs(float(start) - 0.9) > 0.2, start
    handle, track = slider.locator(".noUi-handle").bounding_box(), slider.locator(".noUi-base").bounding_box()
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + 0.9 * track["width"], y, steps=10)
    page.mouse.up()
    expect(readout).not_to_have_text(start, timeout=budget(10) * 1000)
    assert abs(float(readout.inner_text()) - 0.9) <= 0.03, readout.inner_text()
    dragged = _explorer_png(ui, budget, before=first)
    ui.screenshot(path=str(artefacts / "09_explorer_after_slider.png"))

    # type a vocabulary, press "apply vocabulary": the figure and the class count follow
    names, n_seen = toy_vocabulary()
    ui.locator("textarea").fill("\n".join(names))
    ui.locator("button", has_text="apply vocabulary").click()
    _explorer_png(ui, budget, before=dragged)
    expect(ui).to_contain_text(f"{len(names)} classes ({n_seen} seen, {len(names) - n_seen} new)",
                               timeout=budget(30) * 1000)
    ui.screenshot(path=str(artefacts / "09_explorer_after_vocabulary.png"))
    page.screenshot(path=str(artefacts / "09_page_end.png"))

    state = page.evaluate("(p) => window.__ebsegState(p)", name)
    found = problems(state)
    assert not found, "after the interactions:\n" + "\n".join(found)
