"""Open a report in a real headless browser (Chromium) to check that it renders.

Used by the tests and available to users (``check_in_browser("runs/demo/report.html")``): it takes a
screenshot, measures whether the page is blank, and counts the ``<img>`` elements that decoded (natural
width > 0). The browser runs with networking features off and a throw-away profile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nctransfer.exceptions import InputValueError, NotFoundError

#: executables tried, in order, when no browser is given
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

_FLAGS = (
    "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
    "--mute-audio", "--no-default-browser-check",
)

_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement('div');
  d.id = 'nctransfer-image-probe';
  d.textContent = 'images:' + ok + '/' + imgs.length;
  document.body.appendChild(d);
});
</script>"""


@dataclass
class BrowserCheck:
    """Outcome of :func:`check_in_browser`."""

    screenshot: Path
    n_images: int
    n_loaded: int
    ink_fraction: float  # fraction of screenshot pixels that differ clearly from the page background
    pixel_std: float  # standard deviation of the grey levels (0-255)

    @property
    def blank(self) -> bool:
        """True if the screenshot is (almost) uniform."""
        return self.ink_fraction < 0.01 or self.pixel_std < 2.0

    @property
    def all_images_loaded(self) -> bool:
        return self.n_loaded == self.n_images


def find_browser() -> str | None:
    """Path of a Chromium-family browser, or ``None`` (``NCTRANSFER_BROWSER`` overrides the search)."""
    env = os.environ.get("NCTRANSFER_BROWSER")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], profile: str, timeout: float) -> subprocess.CompletedProcess:
    cmd = [browser, *_FLAGS, f"--user-data-dir={profile}", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Chromium refuses to run as root with its sandbox
        cmd.insert(1, "--no-sandbox")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_in_browser(html_path: str | os.PathLike, screenshot: str | os.PathLike | None = None, *,
                     browser: str | None = None, window: tuple[int, int] = (1280, 2000),
                     timeout: float = 120.0) -> BrowserCheck:
    """Render ``html_path`` headless: a screenshot, the blankness of it, and how many images loaded.

    Args:
        html_path: the HTML file (not modified; a copy with a small probe script is rendered).
        screenshot: where to write the PNG screenshot (default: next to the HTML, ``<stem>.screenshot.png``).
        browser: browser executable (default: :func:`find_browser`).
        window: window size in pixels (width, height) of the screenshot.
        timeout: seconds allowed to each browser run.

    Raises:
        NotFoundError: no browser, or no HTML file.
        InputValueError: the browser failed or produced no output.
    """
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise NotFoundError(f"check_in_browser: html_path {str(html_path)!r} does not exist.")
    browser = browser or find_browser()
    if not browser:
        raise NotFoundError(f"check_in_browser: no headless browser found (tried {', '.join(BROWSER_NAMES)}); "
                            "install Debian's 'chromium' package or set NCTRANSFER_BROWSER.")
    shot = Path(screenshot) if screenshot else html_path.with_suffix(".screenshot.png")
    with tempfile.TemporaryDirectory(prefix="nctransfer-browser-") as tmp:
        probe_html = Path(tmp) / "page.html"
        text = html_path.read_text(encoding="utf-8")
        probe_html.write_text(text.replace("</body>", _PROBE + "</body>", 1) if "</body>" in text
                              else text + _PROBE, encoding="utf-8")
        url = probe_html.as_uri()
        dom = _run(browser, ["--virtual-time-budget=10000", "--dump-dom", url], str(Path(tmp) / "p1"), timeout)
        m = re.search(r"images:(\d+)/(\d+)", dom.stdout)
        if not m:
            raise InputValueError(f"check_in_browser: {browser} rendered no DOM for {html_path} (exit "
                                  f"{dom.returncode}); stderr tail: {dom.stderr[-500:]!r}")
        n_loaded, n_images = int(m.group(1)), int(m.group(2))
        shot.parent.mkdir(parents=True, exist_ok=True)
        # the screenshot is taken of the original page, so it shows exactly what a reader sees
        res = _run(browser, [f"--window-size={window[0]},{window[1]}", f"--screenshot={shot}", html_path.as_uri()],
                   str(Path(tmp) / "p2"), timeout)
        if not shot.is_file():
            raise InputValueError(f"check_in_browser: {browser} wrote no screenshot (exit {res.returncode}); "
                                  f"stderr tail: {res.stderr[-500:]!r}")
    from PIL import Image  # deferred: Pillow comes with the optional extras (matplotlib, torchvision), not the core

    grey = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    values, counts = np.unique(grey.round(), return_counts=True)
    background = values[np.argmax(counts)]
    ink = float(np.mean(np.abs(grey - background) > 24))
    return BrowserCheck(screenshot=shot, n_images=n_images, n_loaded=n_loaded, ink_fraction=ink,
                        pixel_std=float(grey.std()))
