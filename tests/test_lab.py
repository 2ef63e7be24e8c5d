"""JupyterLab from the project's environment, driven through its UI by a real browser: notebook 02
opens on the project's kernel ("Python 3 (cnflib)"), its first cells up to the first plot run, and
the figure appears with no error. A screenshot goes to outputs/browser/lab_02.png."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from browser_support import OUTPUTS, ROOT, browser_context, free_port, require_browser

NOTEBOOK = ROOT / "notebooks" / "02_continuous_normalizing_flows.ipynb"
KERNEL_NAME = "Python 3 (cnflib)"


def first_plot_cell(cells: list[dict]) -> int:
    """Index of the first code cell whose stored outputs hold an image (the cheap plot)."""
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and any(
                k.startswith("image/") for o in cell["outputs"] for k in o.get("data", {})):
            return i
    raise AssertionError(f"{NOTEBOOK.name} stores no figure")


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free 127.0.0.1 port with a token, serving a copy of notebook 02
    with its outputs cleared (so a figure can only come from this run); yields (url, index of the
    first plot cell)."""
    require_browser()  # before starting a server that could not be used
    nb = json.loads(NOTEBOOK.read_text())
    last = first_plot_cell(nb["cells"])
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    work = tmp_path / "work"
    work.mkdir()
    (work / NOTEBOOK.name).write_text(json.dumps(nb))
    port, token = free_port(), "cnflib-test-token"
    env = {k: v for k, v in os.environ.items() if k not in ("CNFLIB_OUTPUT_DIR",)}
    env.update(PYTHONPATH=str(ROOT), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), OMP_NUM_THREADS="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         "--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--ServerApp.log_level=WARN"] + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"jupyter lab did not start:\n{server.stdout.read()}")
                time.sleep(0.5)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", last
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_notebook_02_runs_in_jupyterlab(lab, tmp_path):
    url, last = lab
    with browser_context(tmp_path / "chromium-profile") as browser:
        page = browser.new_page()
        page.goto(url)
        cells = page.locator(".jp-NotebookPanel .jp-Cell")
        cells.first.wait_for(timeout=90_000)
        kernel = page.locator(".jp-NotebookPanel-toolbar .jp-KernelName")
        kernel.get_by_text(KERNEL_NAME).wait_for(timeout=60_000)
        page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
            timeout=90_000)

        cells.first.click()
        page.keyboard.press("Escape")  # command mode: Shift+Enter runs the cell and selects the next
        for _ in range(last + 1):
            page.keyboard.press("Shift+Enter")
        figure = cells.nth(last).locator(".jp-OutputArea-output img")
        figure.wait_for(timeout=120_000)
        page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
            timeout=120_000)
        assert figure.evaluate("img => img.complete && img.naturalWidth > 0")

        outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_inner_texts()
        assert not [text for text in outputs if "Traceback" in text], outputs
        prompts = [cells.nth(i).locator(".jp-InputPrompt").inner_text() for i in range(last + 1)
                   if "jp-CodeCell" in (cells.nth(i).get_attribute("class") or "")]
        assert prompts and all(p.strip() not in ("[ ]:", "[*]:") for p in prompts), prompts
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        figure.scroll_into_view_if_needed()
        page.screenshot(path=str(OUTPUTS / "lab_02.png"))
        page.close()
