"""Open a local HTML page in a real headless Chromium, as a person would, and report what they would see.

The browser is Debian's `chromium` (`make browser` installs it), driven by Playwright's Python package
over pipes; Playwright's own browser downloads are never used. The page must be offline: every request
that is not `file:`, `data:`, `blob:` or `about:` is aborted and reported.

    .venv/bin/python tests/helpers/browser.py PAGE.html OUT.png [--width 1280] [--clip-height N]

prints the checks, saves the screenshot, and exits 1 when a check fails (2 when no browser is there).

`browse(origin)` opens a site served on loopback instead (a local server's web UI): only that origin
(and `data:`, `blob:`, `about:`) is reached, every other request is aborted and reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
# Headless, no sandbox (root in a container), and nothing that phones home (Google's update, sync,
# safe-browsing and field-trial services): under `run-offline` those attempts would only show up as
# refused connections, and outside it they would leave the machine. The host resolver refuses every
# name but localhost, so Chromium itself cannot reach another machine even outside the namespace; its
# rules apply to IP literals too, hence the loopback address is excluded by name (browse()'s servers).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
BLANK_BELOW = 0.001  # a screenshot with less than 0.1 % of its pixels off the most common colour is blank
TIMEOUT_MS = 60_000

# Every <img> (lazy ones made eager) and SVG <image>, awaited until loaded or failed (at most 10 s).
_IMAGES_JS = """
async () => {
  const settle = (img) => img.complete ? Promise.resolve() : new Promise((done) => {
    img.addEventListener('load', done, {once: true});
    img.addEventListener('error', done, {once: true});
    setTimeout(done, 10000);
  });
  const imgs = Array.from(document.querySelectorAll('img'));
  imgs.forEach((img) => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.all(imgs.map(settle));
  const out = imgs.map((img) => ({
    kind: 'img', src: img.currentSrc || img.getAttribute('src') || '',
    loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight,
  }));
  for (const el of document.querySelectorAll('svg image')) {
    const href = el.href && el.href.baseVal ? el.href.baseVal : (el.getAttribute('xlink:href') || '');
    const probe = new Image();
    probe.src = href ? new URL(href, document.baseURI).href : '';
    await settle(probe);
    out.push({kind: 'svg image', src: href, loaded: probe.complete && probe.naturalWidth > 0,
              width: probe.naturalWidth, height: probe.naturalHeight});
  }
  return out;
}
"""


@dataclass
class Image:
    kind: str  # "img" or "svg image"
    src: str
    loaded: bool  # complete and naturalWidth > 0
    width: int
    height: int


@dataclass
class Rendered:
    page: Path
    title: str = ""
    text: str = ""  # the body's visible text (innerText)
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    remote_requests: list[str] = field(default_factory=list)  # non-local URLs the page tried (all aborted)
    failed_requests: list[str] = field(default_factory=list)  # local URLs that failed (a missing file)
    images: list[Image] = field(default_factory=list)
    screenshot: Path | None = None
    ink: float | None = None  # share of the screenshot's pixels off its most common colour
    blank: bool | None = None

    @property
    def broken_images(self) -> list[Image]:
        return [i for i in self.images if not i.loaded]

    @property
    def problems(self) -> list[str]:
        """What a person would call broken; console warnings are listed by report() but are not problems."""
        out = [f"console error: {m}" for m in self.console_errors]
        out += [f"page error: {m}" for m in self.page_errors]
        out += [f"non-local request (the page must be offline): {u}" for u in self.remote_requests]
        out += [f"failed to load: {u}" for u in self.failed_requests]
        out += [f"{i.kind} not loaded: {short(i.src)}" for i in self.broken_images]
        if self.blank:
            out.append(f"blank screenshot: {self.ink:.5f} of the pixels off the background")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        loaded = len(self.images) - len(self.broken_images)
        lines = [
            f"page: {self.page}",
            f"title: {self.title!r}",
            f"images loaded: {loaded}/{len(self.images)}",
            f"console errors: {len(self.console_errors)}, warnings: {len(self.console_warnings)}",
            f"page errors: {len(self.page_errors)}",
            f"non-local requests: {len(self.remote_requests)}, failed local loads: {len(self.failed_requests)}",
        ]
        if self.screenshot is not None:
            state = "BLANK" if self.blank else "not blank"
            lines.append(f"screenshot: {self.screenshot} ({state}: {self.ink:.4f} of the pixels off the background)")
        lines += [f"warning: console warning: {m}" for m in self.console_warnings]
        lines += [f"FAIL: {p}" for p in self.problems]
        lines.append("ok" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def short(url: str, n: int = 60) -> str:
    """A data: URL cut to its first `n` characters (a whole base64 plot is no use in a message); others whole."""
    return url if len(url) <= n or not url.startswith("data:") else url[: n - 3] + "..."


def chromium_path() -> Path | None:
    """Debian's Chromium (`make browser`), or a `chromium` on PATH; None when there is none."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def require_browser() -> Path:
    """Chromium's path for a test; skips when there is none, but fails under CI (CI=true), which installs one."""
    import pytest

    exe = chromium_path()
    reason = None
    if exe is None:
        reason = f"no {CHROMIUM} and it could not be installed (as root, `make browser` runs apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (`make install-test`: it is in the test extra)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must have it (.ci/run runs `make browser`)", pytrace=False)
        pytest.skip(reason)
    return exe


def ink(png: Path) -> float:
    """Share of the image's pixels that differ (by more than 8 levels in a channel) from its most common colour."""
    import cv2
    import numpy as np

    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ValueError(f"{png}: not a readable image")
    px = img.reshape(-1, 3).astype(np.int32)
    packed = (px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2]
    mode = int(np.bincount(packed).argmax())
    background = np.array([(mode >> 16) & 255, (mode >> 8) & 255, mode & 255], dtype=np.int32)
    off = (np.abs(px - background) > 8).any(axis=1)
    return float(off.mean())


def _launch(pw, profile: str, exe: Path, width: int, height: int, timeout_ms: int):
    """Headless Chromium with a fresh, empty profile every time: nothing cached, no first-run or sync state."""
    return pw.chromium.launch_persistent_context(
        profile,
        executable_path=str(exe),
        headless=True,
        args=list(FLAGS),
        chromium_sandbox=False,
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        service_workers="block",
        timeout=timeout_ms,
    )


@contextmanager
def _tab(executable: Path | None, width: int, height: int, timeout_ms: int, on_route) -> Iterator[Any]:
    """A tab of a headless Chromium (`executable`, else Debian's) in a throwaway profile, every request of it
    through `on_route`; closed on the way out. render() and browse() add their own checks to it."""
    from playwright.sync_api import sync_playwright

    exe = executable or chromium_path()
    if exe is None:
        raise FileNotFoundError(f"no {CHROMIUM}: install Debian's chromium (`make browser`, as root)")
    with tempfile.TemporaryDirectory(prefix="visem-chromium-") as profile, sync_playwright() as pw:
        context = _launch(pw, profile, exe, width, height, timeout_ms)
        try:
            context.set_default_timeout(timeout_ms)
            context.route("**/*", on_route)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def render(
    page: Path,
    screenshot: Path | None = None,
    width: int = 1280,
    height: int = 720,
    clip_height: int | None = None,
    executable: Path | None = None,
    timeout_ms: int = TIMEOUT_MS,
) -> Rendered:
    """Open `page` (a local HTML file) in headless Chromium, wait for it to load, and collect the checks.

    The screenshot is of the full page (its top `clip_height` pixels when given), `width` CSS pixels wide.
    """
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(page)
    out = Rendered(page=page)

    def on_console(msg) -> None:
        where = msg.location or {}
        at = f" ({short(where.get('url', ''))}:{where.get('lineNumber', '?')})" if where.get("url") else ""
        if msg.type == "error":
            out.console_errors.append(msg.text + at)
        elif msg.type == "warning":
            out.console_warnings.append(msg.text + at)

    def on_request(request) -> None:
        if not request.url.startswith(LOCAL_SCHEMES) and request.url not in out.remote_requests:
            out.remote_requests.append(request.url)

    def on_failed(request) -> None:
        if request.url.startswith(LOCAL_SCHEMES):
            out.failed_requests.append(f"{short(request.url)} ({request.failure})")

    def on_route(route) -> None:
        if route.request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            on_request(route.request)  # recorded even if the request event came first or not at all
            route.abort("blockedbyclient")

    with _tab(executable, width, height, timeout_ms, on_route) as tab:
        tab.on("console", on_console)
        tab.on("pageerror", lambda exc: out.page_errors.append(str(exc)))
        tab.on("request", on_request)
        tab.on("requestfailed", on_failed)
        tab.goto(page.as_uri(), wait_until="load")
        tab.evaluate("document.fonts.ready.then(() => true)")
        out.images = [Image(**i) for i in tab.evaluate(_IMAGES_JS)]
        # Two animation frames: what the load handlers changed is painted before the screenshot.
        tab.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
        out.title = tab.title()
        out.text = tab.evaluate("document.body ? document.body.innerText : ''")
        if screenshot is not None:
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            clip = None
            if clip_height:
                full = tab.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": width, "height": min(clip_height, max(full, 1))}
            tab.screenshot(path=str(screenshot), full_page=True, clip=clip, animations="disabled")
            out.screenshot = screenshot
            out.ink = ink(screenshot)
            out.blank = out.ink < BLANK_BELOW
    return out


@dataclass
class Visit:
    """What a person's browser met on a site served on loopback (browse()), gathered while it is open."""

    origin: str  # http://127.0.0.1:PORT
    console_errors: list[str] = field(default_factory=list)  # "message (url:line)"
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    remote_requests: list[str] = field(default_factory=list)  # URLs off the origin the pages tried (all aborted)
    failed_requests: list[str] = field(default_factory=list)  # the origin's URLs that failed or answered >= 400

    def problems(self, known: Iterable[str] = ()) -> list[str]:
        """What a person would call broken, as Rendered.problems, less the faults of someone else's site that
        the caller names: `known` are URL prefixes (a failed request, its console message, an aborted
        remote request)."""
        known = tuple(known)

        def theirs(text: str) -> bool:
            return any(text.startswith(k) or f"({k}" in text for k in known)

        out = [f"console error: {m}" for m in self.console_errors if not theirs(m)]
        out += [f"page error: {m}" for m in self.page_errors]
        out += [f"non-local request (aborted): {u}" for u in self.remote_requests if not theirs(u)]
        out += [f"failed to load: {u}" for u in self.failed_requests if not theirs(u)]
        return out


@contextmanager
def browse(
    origin: str,
    width: int = 1280,
    height: int = 900,
    executable: Path | None = None,
    timeout_ms: int = TIMEOUT_MS,
) -> Iterator[tuple[Any, Visit]]:
    """A headless Chromium tab (Playwright's Page) for the site served at `origin` on loopback, and the Visit
    its checks gather: requests to `origin` and local schemes go through, every other is aborted.

    Every request waits for this process's route handler, which runs only while Playwright is called: wait
    for what a page sends with Playwright (expect_response, wait_for_timeout), never with time.sleep."""
    visit = Visit(origin.rstrip("/"))
    mine = (visit.origin + "/", *LOCAL_SCHEMES)

    def on_console(msg) -> None:
        if msg.type == "error":
            where = msg.location or {}
            at = f" ({short(where['url'])}:{where.get('lineNumber', '?')})" if where.get("url") else ""
            visit.console_errors.append(msg.text + at)

    def on_route(route) -> None:
        url = route.request.url
        if url.startswith(mine):
            route.continue_()
            return
        if url not in visit.remote_requests:
            visit.remote_requests.append(url)
        route.abort("blockedbyclient")

    def on_failed(request) -> None:
        # ERR_ABORTED: the page itself cancelled it (a new page loaded while it was under way).
        if request.url.startswith(visit.origin + "/") and request.failure != "net::ERR_ABORTED":
            visit.failed_requests.append(f"{request.url} ({request.failure})")

    def on_response(response) -> None:
        if response.status >= 400 and response.url.startswith(visit.origin + "/"):
            visit.failed_requests.append(f"{response.url} (HTTP {response.status})")

    with _tab(executable, width, height, timeout_ms, on_route) as tab:
        tab.on("console", on_console)
        tab.on("pageerror", lambda exc: visit.page_errors.append(str(exc)))
        tab.on("requestfailed", on_failed)
        tab.on("response", on_response)
        yield tab, visit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the local HTML file")
    parser.add_argument("out", type=Path, help="where the PNG screenshot goes")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    parser.add_argument("--clip-height", type=int, default=None, help="keep only the page's top N pixels")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        print(f"no {CHROMIUM}: install Debian's chromium with `make browser` (as root)", file=sys.stderr)
        return 2
    rendered = render(args.page, args.out, width=args.width, clip_height=args.clip_height)
    print(rendered.report())
    return 0 if rendered.ok else 1


if __name__ == "__main__":
    sys.exit(main())
