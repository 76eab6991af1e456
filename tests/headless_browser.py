"""A real headless browser (Debian's Chromium) for tests of the HTML report.

Why: whether a page renders, and whether every image on it decodes, is only known when a browser has
loaded it. The fixture :func:`chromium` finds Chromium, or installs it with ``apt-get install chromium``
when it is missing and we are root (CI machines start bare), and skips with the exact reason where it
truly cannot. :class:`ServedDirectory` serves a directory over HTTP on localhost (so pages, their
images and a checker page share one origin); :func:`screenshot` and :func:`dump_dom` run Chromium
headless once each, with a private profile, no network besides localhost and a virtual-time budget
so pages finish loading (and scripts finish running) before the capture.

:func:`crawl` loads a page and every local page it links to inside the browser, and reports per image
whether the browser decoded it (``naturalWidth > 0``), per link whether it answered (HTTP 200), and per
``#fragment`` whether its target element exists.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
                  "--disable-dev-shm-usage")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, BROWSER_NAMES) if path), None)


def _install_chromium() -> str:
    """apt-get install chromium (as root); returns why it could not, or '' on success."""
    if os.geteuid() != 0:
        return "Chromium is not installed and we are not root, so apt-get cannot install it"
    if not shutil.which("apt-get"):
        return "Chromium is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # stale package lists on a fresh machine: update once, then retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=900)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-10:])
        return f"`{' '.join(install)}` failed (exit {result.returncode}):\n{tail}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium, installed when missing; skips with the reason otherwise."""
    path = find_chromium()
    if path is None:
        reason = _install_chromium()
        path = find_chromium()
        if path is None:
            pytest.skip(f"no headless browser: {reason or 'apt-get installed chromium but it is not on PATH'}")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test output stays readable
        pass


class ServedDirectory:
    """``directory`` over HTTP on 127.0.0.1 (a free port) while the context is open."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> "ServedDirectory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _run(browser: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(browser: str, url: str, out: Path, *, width: int = 1280, height: int = 2400) -> Path:
    result = _run(browser, f"--window-size={width},{height}", "--virtual-time-budget=10000",
                  f"--screenshot={out}", url)
    assert out.is_file(), f"Chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-3000:]}"
    return out


def dump_dom(browser: str, url: str) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    result = _run(browser, "--virtual-time-budget=60000", "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# Loads each page in an iframe of the checker's origin, waits for its images, then checks images, links and
# fragments; follows links to further .html pages of the same origin. Writes JSON into #result.
CRAWLER = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>crawl</title></head><body>
<pre id="result">pending</pre>
<script>
const start = new URL(%(start)s, location.href);
async function load(url) {
  const frame = document.createElement("iframe");
  frame.style.width = "1200px"; frame.style.height = "800px";
  const loaded = new Promise(resolve => { frame.onload = resolve; });
  frame.src = url.href; document.body.appendChild(frame);
  await loaded;
  const doc = frame.contentDocument;
  await Promise.all([...doc.images].map(img => img.complete ? null :
      new Promise(resolve => { img.onload = img.onerror = resolve; })));
  return frame;
}
(async () => {
  const report = {pages: [], images: [], links: [], fragments: []};
  const ids = {}; const queue = [start.href]; const seen = new Set(); const wanted = [];
  try {
    while (queue.length) {
      const href = queue.shift();
      const page = new URL(href); page.hash = "";
      if (seen.has(page.href)) continue;
      seen.add(page.href);
      const frame = await load(page);
      const doc = frame.contentDocument;
      report.pages.push({page: page.pathname, title: doc.title, text: doc.body ? doc.body.innerText.length : 0});
      ids[page.pathname] = [...doc.querySelectorAll("[id]")].map(e => e.id);
      for (const img of doc.images) {
        report.images.push({page: page.pathname, src: img.getAttribute("src").slice(0, 120),
                            decoded: img.complete && img.naturalWidth > 0, width: img.naturalWidth});
      }
      for (const a of doc.querySelectorAll("a[href]")) {
        const target = new URL(a.getAttribute("href"), page.href);
        if (target.origin !== location.origin) { report.links.push({page: page.pathname, href: target.href, ok: false, external: true}); continue; }
        if (target.hash) wanted.push({page: page.pathname, target: target.pathname, id: decodeURIComponent(target.hash.slice(1))});
        const bare = new URL(target.href); bare.hash = "";
        if (bare.href === page.href) continue;
        const response = await fetch(bare.href);
        report.links.push({page: page.pathname, href: bare.pathname, ok: response.ok, status: response.status});
        if (response.ok && bare.pathname.endsWith(".html")) queue.push(bare.href);
      }
      frame.remove();
    }
    for (const w of wanted) report.fragments.push({...w, ok: (ids[w.target] || []).includes(w.id)});
  } catch (error) { report.error = String(error); }
  document.getElementById("result").textContent = JSON.stringify(report);
})();
</script></body></html>
"""


def crawl(browser: str, served_root: Path, server: ServedDirectory, start: str) -> dict:
    """Browser's view of ``start`` (a path under ``served_root``) and every local page it links to."""
    checker = served_root / "crawl-check.html"
    checker.write_text(CRAWLER % {"start": json.dumps(start)}, encoding="utf-8")
    dom = dump_dom(browser, server.url + checker.name)
    begin, end = dom.index('<pre id="result">') + len('<pre id="result">'), dom.index("</pre>")
    text = dom[begin:end].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert text != "pending", "the crawler did not finish within the browser's time budget"
    return json.loads(text)
