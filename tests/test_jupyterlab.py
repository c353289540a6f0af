"""JupyterLab as learners meet it: a real `jupyter lab`, a real browser, Run > Run All Cells.

Needs Debian's Chromium (/usr/bin/chromium), driven by Playwright's Python package; Playwright's own
browser downloads are never used. `make test` installs Chromium when it is missing. Without it this
test fails on purpose (CI must really run it), with the command that fixes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from persrm_utils.paths import project_root

pytestmark = pytest.mark.slow

NOTEBOOK = "00_setup.ipynb"
DONE_TEXT = "Stage 00_setup done"  # printed by session.finish() in the notebook's last code cell
SERVER_START_S = 60
KERNEL_READY_S = 60
RUN_START_S = 30
RUN_ALL_S = 90
INSTALL_HINT = (
    "the JupyterLab browser test needs Debian's Chromium (/usr/bin/chromium). Install it with "
    "`sudo apt-get install -y chromium`, or run `make test`, which installs it when missing."
)
# Headless Chromium on a machine without a display, a GPU or internet. Without the
# background-networking flags Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI and containers run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(f"Chromium not found: {INSTALL_HINT}", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


class Lab:
    """A `jupyter lab` server on 127.0.0.1, isolated from the user's Jupyter settings."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "lab"
        self.runs = tmp_path / "runs"
        self.log = tmp_path / "jupyter.log"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.root.mkdir()
        shutil.copy(project_root() / "notebooks" / NOTEBOOK, self.root / NOTEBOOK)
        home = tmp_path / "jupyter-home"
        settings = home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # No "get notified about Jupyter news?" toast, no update check: the machine is offline.
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self.env = {
            **os.environ,
            "PERSRM_RUNS_DIR": str(self.runs),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            # The user's own config, kernels and workspaces must not change what the test sees.
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        }
        self.proc: subprocess.Popen | None = None
        self.children: list[psutil.Process] = []

    def start(self) -> None:
        jupyter = Path(sys.executable).with_name("jupyter")
        assert jupyter.exists(), f"{jupyter} is missing: run `make install-dev`"
        cmd = [
            str(jupyter),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited with code {self.proc.returncode}:\n{_tail(self.log)}",
                    pytrace=False,
                )
            with contextlib.suppress(OSError):
                self._api("GET", "/api/status")
                return
            time.sleep(0.5)
        pytest.fail(
            f"jupyter lab did not answer on {self.url} within {SERVER_START_S} s:\n"
            f"{_tail(self.log)}",
            pytrace=False,
        )

    def _api(self, method: str, path: str, timeout: float = 5) -> bytes:
        req = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def notebook_url(self) -> str:
        return f"{self.url}/lab/tree/{NOTEBOOK}?token={self.token}"

    def stop(self) -> None:
        """Shut down the server and its kernels; escalate to signals when they do not stop."""
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            self.children = psutil.Process(self.proc.pid).children(recursive=True)
        with contextlib.suppress(OSError):  # also shuts down the kernels
            self._api("POST", "/api/shutdown")
        for sig, wait in ((None, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
                break
        # Kernels run in their own process group: kill any that outlived the server.
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(self.children, timeout=5)


@pytest.fixture
def lab(tmp_path):
    """A server, not yet started; stopped with its kernels however the test ends."""
    server = Lab(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _outputs_text(page) -> str:
    # textContent, not innerText: cells scrolled out of view are not rendered (content-visibility),
    # and their innerText is empty.
    return "\n---\n".join(page.locator(".jp-OutputArea-output").all_text_contents())


def test_00_setup_runs_in_jupyterlab_in_a_real_browser(lab, tmp_path):
    chromium = _chromium()  # a failure, not a skip: CI must really run this test
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is missing: run `make install-dev` (requirements/dev.txt)", pytrace=False
        )
    lab.start()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            try:
                _run_all_cells(page, lab, expect)
            except BaseException:
                with contextlib.suppress(Exception):
                    page.screenshot(path=tmp_path / "jupyterlab-failure.png")
                raise

            done = page.locator(".jp-OutputArea-output", has_text=DONE_TEXT)
            expect(done).to_have_count(1)
            done.scroll_into_view_if_needed()
            expect(done).to_be_visible()
            page.screenshot(path=tmp_path / "jupyterlab.png")
        finally:
            browser.close()

    assert (tmp_path / "jupyterlab.png").stat().st_size > 10_000
    manifest = json.loads((lab.runs / "smoke" / "manifest.json").read_text())
    assert manifest["stages"]["00_setup"]["status"] == "done"


def _run_all_cells(page, lab: Lab, expect) -> None:
    page.goto(lab.notebook_url())
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=KERNEL_READY_S * 1000)
    # The status bar reads "No Kernel | Initializing" until the kernel is up, then
    # "<kernel name> | Idle".
    ready = re.compile(r"^(?!No Kernel).* \| Idle$")
    try:
        expect(page.locator(".jp-StatusBar-TextItem", has_text=ready)).to_have_count(
            1, timeout=KERNEL_READY_S * 1000
        )
    except AssertionError:
        bar = page.locator(".jp-StatusBar-TextItem").all_text_contents()
        pytest.fail(
            f"the kernel was not ready within {KERNEL_READY_S} s (status bar: {bar}). "
            f"jupyter lab's log:\n{_tail(lab.log)}",
            pytrace=False,
        )

    # Run > Run All Cells, by the labels a learner reads (the item's command is runmenu:run-all).
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item", has=label).click()

    # Every code cell's prompt turns "[*]:" while queued or running, then "[n]:"; after an error
    # the cells still queued go back to "[ ]:". Done: a number on the last code cell, or none busy.
    prompts = notebook.locator(".jp-CodeCell .jp-InputArea-prompt")
    clicked = time.monotonic()
    started = False
    while time.monotonic() - clicked < RUN_ALL_S:
        texts = [t.strip() for t in prompts.all_text_contents()]
        busy = any("*" in t for t in texts)
        started = started or busy
        if texts and re.fullmatch(r"\[\d+\]:", texts[-1]) and not busy:
            break
        if not started and time.monotonic() - clicked > RUN_START_S:
            pytest.fail(
                f"Run > Run All Cells started nothing within {RUN_START_S} s (prompts {texts})",
                pytrace=False,
            )
        if started and not busy:
            pytest.fail(
                f"Run All Cells stopped before the last cell (prompts {texts}). "
                f"Outputs:\n{_outputs_text(page)[-3000:]}",
                pytrace=False,
            )
        time.sleep(0.5)
    else:
        pytest.fail(
            f"Run All Cells did not finish within {RUN_ALL_S} s. "
            f"Outputs:\n{_outputs_text(page)[-3000:]}",
            pytrace=False,
        )

    text = _outputs_text(page)
    assert DONE_TEXT in text, f"'{DONE_TEXT}' is not among the rendered outputs:\n{text[-3000:]}"
    assert "Traceback" not in text, f"a cell failed:\n{text[-3000:]}"
