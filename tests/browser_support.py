"""Shared pieces of the browser tests: Debian's Chromium driven by Playwright, and local servers.

The tests need ``/usr/bin/chromium`` (Debian's package; Playwright's own browser download is not
used) and the ``playwright`` Python package. Where either is missing they skip with a message
saying how to get them, except under ``CI=true``, where they fail: CI must run them.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import pathlib
import shutil
import socket
import threading
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "outputs" / "browser"  # screenshots, kept as test artifacts (git-ignored)
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOW_TO_ENABLE = ("install Debian's Chromium (`apt-get install chromium`, as root) and Playwright "
                 "(`pip install playwright`, in the project's environment); `bash ci/test.sh` does both as root")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true, where the browser tests must run."""
    message = f"{reason}: {HOW_TO_ENABLE}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def chromium_path() -> str:
    """The system Chromium's path, or skip/fail."""
    path = os.environ.get("CNFLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not pathlib.Path(path).is_file():
        unavailable(f"no Chromium at {path}")
    return path


def require_browser() -> str:
    """Chromium's path, after checking that Playwright is importable (else skip/fail)."""
    executable = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed")
    return executable


@contextlib.contextmanager
def browser_context(profile: pathlib.Path) -> Iterator:
    """A fresh headless Chromium profile (Playwright ``BrowserContext``) of 1280x900 pixels."""
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve(folder: pathlib.Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 in a thread; yields the base URL (ending in '/')."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
