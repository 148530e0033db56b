"""Open a report in headless Chromium and check that it renders: the report's browser test.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (JSON messages,
NUL-terminated, on file descriptors 3 and 4 of the browser), so it needs only the
standard library and Debian's ``chromium`` package: no websocket client, no port, no
browser download. :func:`check_page` loads a file, waits for the load event and returns
what a reader would see: the images and whether each decoded, the tables, every console
error and exception, and a screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install -y chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
)


_TRAMPOLINE = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3)\nos.dup2(w, 4)\nos.close(r)\nos.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)
"""Runs in the child: pipe ends -> fds 3 and 4, then exec Chromium (argv[3:])."""


class BrowserError(RuntimeError):
    """Chromium is missing, failed to start, or did not answer in time."""


def find_chromium() -> str:
    """Path of a Chromium executable, or :class:`BrowserError` naming the install command."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}): install it with `{INSTALL_HINT}`")


@dataclass
class PageCheck:
    """What the browser saw."""

    title: str
    images: list[dict]
    """One per ``<img>``: ``src`` (first 40 chars), ``complete``, ``naturalWidth``, ``naturalHeight``."""
    tables: int
    table_rows: int
    console_errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and failed loads (``Log`` entries of level error)."""
    screenshot_png: bytes = b""

    @property
    def broken_images(self) -> list[dict]:
        return [im for im in self.images if not im["complete"] or im["naturalWidth"] == 0]


class _DevToolsPipe:
    """A minimal CDP client over Chromium's debugging pipe."""

    def __init__(self, executable: str, user_data_dir: str, window: tuple[int, int]):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. A small Python
        # trampoline moves the pipe ends there and execs Chromium (no preexec_fn: unsafe
        # with threads; POSIX sh redirects only fds 0-9). The ends first move to fds >= 10
        # so that they cannot already sit on 3 or 4.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", f"--window-size={window[0]},{window[1]}", "about:blank"]
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, str(child_r), str(child_w), executable, *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(child_r, child_w),
            )
        finally:
            os.close(child_r)
            os.close(child_w)
        self.write_fd = to_chrome_w
        self.read_fd = from_chrome_r
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.messages.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self.messages.put(json.loads(raw))

    def _next(self, deadline: float) -> dict:
        try:
            msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError("Chromium did not answer in time") from None
        if msg is None:
            err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.poll() is not None else ""
            raise BrowserError(f"Chromium closed the DevTools pipe (exit {self.proc.poll()}): {err.strip()}")
        return msg

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout_s: float = 30.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None, timeout_s: float) -> dict:
        for ev in self.events:
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self._next(deadline)
            self.events.append(ev)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5.0)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass


_PAGE_PROBE = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images).map(im => ({src: im.src.slice(0, 40), complete: im.complete,
      naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight})),
  tables: document.querySelectorAll('table').length,
  table_rows: document.querySelectorAll('table tbody tr').length,
})"""


def _console_errors(events: list[dict], session: str) -> list[str]:
    errors = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(f"exception: {d.get('text', '')} {d.get('exception', {}).get('description', '')}".strip())
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            errors.append(f"{e.get('source')}: {e.get('text')} {e.get('url', '')}".strip())
    return errors


def check_page(html_path: str | Path, chromium: str | None = None, window: tuple[int, int] = (1280, 1600), timeout_s: float = 60.0) -> PageCheck:
    """Load ``html_path`` in headless Chromium; return its images, tables, console errors and a screenshot."""
    exe = chromium or find_chromium()
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="drive-drail-chromium-") as profile:
        browser = _DevToolsPipe(exe, profile, window)
        try:
            targets = browser.call("Target.getTargets", timeout_s=timeout_s)["targetInfos"]
            page = next((t for t in targets if t.get("type") == "page"), None)
            target_id = page["targetId"] if page else browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.call(f"{domain}.enable", session=session)
            browser.events.clear()
            browser.call("Page.navigate", {"url": url}, session=session, timeout_s=timeout_s)
            browser.wait_event("Page.loadEventFired", session, timeout_s)
            probe = browser.call("Runtime.evaluate", {"expression": _PAGE_PROBE, "returnByValue": True}, session=session)
            seen = json.loads(probe["result"]["value"])
            shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout_s=timeout_s)
            errors = _console_errors(browser.events, session)
        finally:
            browser.close()
    return PageCheck(
        title=seen["title"],
        images=seen["images"],
        tables=seen["tables"],
        table_rows=seen["table_rows"],
        console_errors=errors,
        screenshot_png=base64.b64decode(shot["data"]),
    )
