"""A JupyterLab server and a Chromium browser for the browser tests, both always stopped.

``LabServer`` starts ``python -m jupyter lab`` from the interpreter that runs the tests (the project's
``.venv``) on 127.0.0.1 with a free port and a random token, in a private set of Jupyter folders (config,
data, runtime, lab settings, workspaces), so nothing of the user's own Jupyter set-up leaks in and
nothing is written outside the temporary folder. ``stop`` shuts the kernels down, then terminates the
server's process group, and kills whatever is left (by process id) after a grace period; it also runs at
interpreter exit should a test be interrupted.

The browser is the system's Chromium (Debian's package ``chromium``) driven by Playwright's Python
package; Playwright's own browser download is never used.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Optional

# Flags that keep a headless Chromium from reaching out to Google's services (on a closed network it
# would otherwise retry those connections at every start).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("Install the system Chromium (Debian/Ubuntu: `sudo apt-get install -y chromium`; `bash .ci/run` "
                "does this in CI) or point EBSEG_CHROMIUM at a Chromium/Chrome binary. Set EBSEG_SKIP_BROWSER=1 "
                "to skip the browser tests on purpose.")

# JupyterLab user settings for a quiet, deterministic page: every cell in the DOM (no virtual
# scrolling, so output checks see them all), no news or update checks, no autosave.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def find_chromium() -> Optional[str]:
    """Path of the system Chromium: ``$EBSEG_CHROMIUM``, else the first of CHROMIUM_NAMES on PATH."""
    env = os.environ.get("EBSEG_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` on loopback, for one test session.

    Args:
        root: the folder the server serves (the notebooks are copied there).
        home: a private folder for Jupyter's config, data, runtime, settings and workspaces, and the log.
        env: extra environment variables for the server and its kernels (e.g. EBSEG_PROFILE=toy).
    """

    def __init__(self, root: Path, home: Path, env: Optional[Dict[str, str]] = None):
        self.root, self.home = Path(root), Path(home)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "jupyterlab.log"
        self.extra_env = dict(env or {})
        self.proc: Optional[subprocess.Popen] = None

    def _environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the test session's Agg would hide every figure: let ipykernel pick inline
        env.pop("JUPYTER_PATH", None)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(self.home / sub)
        for rel, value in LAB_SETTINGS.items():
            path = self.home / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120.0) -> "LabServer":
        """Start the server and wait until its REST API answers (at most ``timeout`` seconds)."""
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.extension_manager=readonly",  # no PyPI queries
               "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        env = self._environment()  # also makes self.home
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("status", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        """Shut the kernels down, terminate the server's process group, kill what is left by pid."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                for k in self.api("kernels", timeout=3):
                    self.api(f"kernels/{k['id']}", method="DELETE", timeout=10)
            except Exception:
                pass  # the kills below still end everything
        children = []
        try:
            import psutil  # an ipykernel dependency: kernels run in their own sessions, find them by parent
            children = psutil.Process(proc.pid).children(recursive=True)
        except Exception:
            pass
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group still exists: its leader has not been reaped
            proc.wait(timeout=10)
        for p in children:  # kernels live in sessions of their own; psutil refuses a reused pid
            try:
                if p.is_running():
                    p.kill()
            except Exception:
                pass
