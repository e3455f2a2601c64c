"""Open every notebook in JupyterLab in a real browser (headless Chromium, driven over the DevTools protocol),
wait for the kernel, save it with the toolbar's save button as a user would, screenshot it into build/lab-check/,
and fail if any tracked file changed. Needs ``chromium`` (``apt-get install chromium``) and the venv
(``make venv``).

    .venv/bin/python scripts/lab_check.py
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket   # websocket-client, installed with jupyter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "lab-check"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAB, DEVTOOLS = _free_port(), _free_port()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _wait(url: str, seconds: float = 60) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"lab-check: {url} did not answer in {seconds:.0f} s")


class Page:
    """One browser tab, driven over the DevTools protocol."""

    def __init__(self) -> None:
        target = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{DEVTOOLS}/json/new?about:blank", method="PUT"), timeout=5).read())
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                return msg.get("result", {})

    def js(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")

    def until(self, expr: str, seconds: float = 60) -> None:
        end = time.time() + seconds
        while time.time() < end:
            if self.js(expr):
                return
            time.sleep(0.5)
        raise SystemExit(f"lab-check: timed out waiting for {expr}")

    def click(self, selector: str) -> bool:
        """A real mouse click at the centre of the first visible element matching ``selector``."""
        box = self.js(f"(() => {{ for (const e of document.querySelectorAll({json.dumps(selector)})) {{ "
                      "const r = e.getBoundingClientRect(); if (r.width > 0 && r.height > 0) "
                      "return [r.x + r.width / 2, r.y + r.height / 2]; } return null; })()")
        if not box:
            return False
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        return True

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    venv = ROOT / ".venv" / "bin"
    subprocess.run([venv / "jupytext-config", "--settings-file",
                    ROOT / ".venv/etc/jupyter/labconfig/default_setting_overrides.json", "set-default-viewer",
                    "python"], check=True, capture_output=True)
    log = open(OUT / "lab.log", "w")
    procs = [subprocess.Popen([venv / "jupyter", "lab", "notebooks/", "--no-browser", f"--port={LAB}",
                               "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root"],
                              cwd=ROOT, stdout=log, stderr=log)]
    try:
        procs.append(subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                       f"--remote-debugging-port={DEVTOOLS}", "--window-size=1600,1000",
                                       f"--user-data-dir={tempfile.mkdtemp()}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(f"http://127.0.0.1:{LAB}/lab")
        _wait(f"http://127.0.0.1:{DEVTOOLS}/json/version")
        names = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.py"))
        for name in names:
            page = Page()
            # a workspace of its own, reset: only this notebook open (Lab would restore earlier tabs)
            page.call("Page.navigate", url=f"http://127.0.0.1:{LAB}/lab/workspaces/check-{name}/tree/{name}.py?reset")
            # opened as a notebook (cells rendered) with its kernel idle
            page.until("document.querySelectorAll('.jp-Notebook .jp-Cell').length > 0")
            page.until("!!document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') || "
                       "document.body.innerText.includes('Idle')", 90)
            saved = False
            for _ in range(3):   # a click before the panel is ready does nothing: try again
                saves = (OUT / "lab.log").read_text().count("Saving file")
                if not page.click('.jp-NotebookPanel-toolbar [data-command="docmanager:save"]'):
                    raise SystemExit(f"lab-check: {name}: no save button in the notebook's toolbar")
                end = time.time() + 10
                while not saved and time.time() < end:
                    time.sleep(0.5)
                    saved = (OUT / "lab.log").read_text().count("Saving file") > saves
                if saved:
                    break
            page.screenshot(OUT / f"{name}.png")
            print(f"{name}: opened as a notebook, {'saved' if saved else 'NOT saved'} with the save button", flush=True)
            if not saved:
                return 1
    finally:
        for p in procs:
            p.terminate()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    if after != before:
        print("lab-check: tracked files changed:\n" + after)
        return 1
    print(f"git status unchanged; screenshots in {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
