"""Drive one notebook in JupyterLab through Playwright: open it, Run All, wait, read its outputs.

The page is JupyterLab itself (served by :class:`lab_server.LabServer` with ``expose_app_in_browser``), so
"Run All" is JupyterLab's own command ``notebook:run-all-cells``, as the Run menu calls it. Outputs are
read twice: from the notebook model (output types, the text of errors) and from the rendered page (what
a user sees: the widget manager's "Error displaying widget" text, or its error view, the broken-page
icon with "Click to show javascript error.").
"""
from __future__ import annotations

import time
from typing import Dict, List

# Helpers defined on every page before JupyterLab's own scripts run.
INIT_JS = """
window.__ebsegPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
window.__ebsegState = (path) => {
  const panel = window.__ebsegPanel(path);
  if (!panel) return {ready: false};
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter((c) => c.model.type === 'code');
  const outputs = cells.map((c) => {
    const out = [];
    for (let i = 0; i < c.model.outputs.length; i++) out.push(c.model.outputs.get(i).toJSON());
    return out;
  });
  return {
    ready: panel.context.isReady && !!kernel,
    kernel: kernel ? kernel.status : null,
    running: cells.filter((c) => (c.node.querySelector('.jp-InputPrompt') || {}).textContent === '[*]:').length,
    counts: cells.map((c) => c.model.executionCount),
    outputs: outputs,
    rendered: cells.map((c) => c.node.querySelector('.jp-Cell-outputWrapper') ?
                               c.node.querySelector('.jp-Cell-outputWrapper').innerText : ''),
    widgetErrors: cells.map((c) => c.node.querySelectorAll('.jupyter-widgets-error-widget').length),
  };
};
"""


def open_notebook(page, url: str, path: str, timeout: float = 180.0) -> None:
    """Load JupyterLab at ``url`` and wait until notebook ``path`` is open with an idle kernel."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_function(
        "(p) => { const s = window.__ebsegState(p); return s.ready && s.kernel === 'idle'; }",
        arg=path, timeout=timeout * 1000, polling=500)


def run_all(page, path: str, timeout: float = 600.0, settle: float = 2.0) -> Dict:
    """Run All (JupyterLab's command) and wait until the kernel is idle and no cell is queued or running
    for ``settle`` seconds; return the notebook state (counts, outputs, rendered text)."""
    page.evaluate("""(p) => { const panel = window.__ebsegPanel(p);
                             window.jupyterapp.shell.activateById(panel.id);
                             return window.jupyterapp.commands.execute('notebook:run-all-cells'); }""", path)
    deadline, quiet_since = time.monotonic() + timeout, None
    time.sleep(1.0)
    while time.monotonic() < deadline:
        s = page.evaluate("(p) => window.__ebsegState(p)", path)
        done = s["kernel"] == "idle" and s["running"] == 0
        if done and quiet_since is not None and time.monotonic() - quiet_since >= settle:
            return s
        quiet_since = (quiet_since or time.monotonic()) if done else None
        time.sleep(0.5)
    raise TimeoutError(f"{path}: the cells were still running after {timeout:.0f} s")


def problems(state: Dict) -> List[str]:
    """Every error output (model), every rendered "Traceback" / "Error displaying widget" and every
    widget error view (page)."""
    found = []
    for i, outs in enumerate(state["outputs"]):
        for o in outs:
            if o.get("output_type") == "error":
                found.append(f"code cell {i}: {o.get('ename')}: {o.get('evalue')}")
    for i, text in enumerate(state["rendered"]):
        for needle in ("Traceback", "Error displaying widget"):
            if needle in text:
                found.append(f"code cell {i} shows {needle!r}: {text[:400]!r}")
    for i, n in enumerate(state["widgetErrors"]):
        if n:
            found.append(f"code cell {i}: {n} widget(s) failed to render (the widget manager's error view)")
    return found
