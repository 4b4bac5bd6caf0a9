"""helpers.browser opens a page in real headless Chromium: each check passes on a good page, fails on a bad one."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import browser as helper
from helpers.browser import render

pytestmark = pytest.mark.timeout(300)
SCRIPT = Path(helper.__file__)


def png_b64(width: int = 240, height: int = 160) -> str:
    """A colourful PNG (a gradient with a filled circle), base64, as a report would embed a plot."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = x
    img[:, :, 1] = x[::-1]
    cv2.circle(img, (width // 2, height // 2), height // 3, (0, 0, 255), -1)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def write(tmp_path: Path, body: str, title: str = "test page", name: str = "page.html") -> Path:
    page = tmp_path / name
    head = f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
    page.write_text(f"{head}\n<body>\n{body}\n</body></html>\n", encoding="utf-8")
    return page


def test_good_page_renders_clean(browser, tmp_path):
    b64 = png_b64()
    page = write(
        tmp_path,
        f"<h1>Round table</h1><p>mAP rises.</p>\n"
        f'<img alt="plot" src="data:image/png;base64,{b64}">\n'
        f'<svg width="120" height="80"><image href="data:image/png;base64,{b64}" width="120" height="80"/></svg>',
        title="visem-pl report",
    )
    shot = tmp_path / "shot.png"
    r = render(page, shot)
    print(r.report())
    assert r.ok, r.problems
    assert r.title == "visem-pl report"
    assert "Round table" in r.text and "mAP rises." in r.text
    assert [(i.kind, i.loaded, i.width, i.height) for i in r.images] == [
        ("img", True, 240, 160),
        ("svg image", True, 240, 160),
    ]
    assert not r.console_errors and not r.page_errors and not r.remote_requests and not r.failed_requests
    assert r.blank is False and r.ink > 0.01
    img = cv2.imread(str(shot))
    assert img.shape[1] == 1280 and img.shape[0] >= 720  # full page at the default width
    # The embedded plot is on the screenshot: its red circle is there in pixels.
    assert ((img[:, :, 2] > 200) & (img[:, :, 1] < 60) & (img[:, :, 0] < 60)).sum() > 1000


def test_broken_images_are_not_loaded(browser, tmp_path):
    page = write(
        tmp_path,
        '<p>two broken plots</p>\n<img id="a" src="data:image/png;base64,AAAA">\n<img id="b" src="plots/missing.png">\n'
        f'<img id="c" src="data:image/png;base64,{png_b64(20, 20)}">',
    )
    r = render(page)
    print(r.report())
    assert not r.ok
    assert [i.loaded for i in r.images] == [False, False, True]
    assert [i.src.startswith("data:") for i in r.broken_images] == [True, False]
    assert r.broken_images[1].src.endswith("plots/missing.png")
    assert any("missing.png" in u and "ERR_FILE_NOT_FOUND" in u for u in r.failed_requests), r.failed_requests
    assert sum("not loaded" in p for p in r.problems) == 2
    assert r.screenshot is None and r.blank is None  # no screenshot asked for


def test_console_error_and_uncaught_exception_are_reported(browser, tmp_path):
    page = write(
        tmp_path,
        "<p>scripted</p>\n<script>console.warn('just a warning'); console.error('plot data missing');</script>\n"
        "<script>throw new Error('kaboom in report.js');</script>\n"
        "<script>setTimeout(() => { undefinedFunction(); }, 0);</script>",
    )
    r = render(page)
    print(r.report())
    assert not r.ok
    assert any("plot data missing" in m for m in r.console_errors), r.console_errors
    assert any("just a warning" in m for m in r.console_warnings), r.console_warnings
    assert not any("just a warning" in p for p in r.problems)  # a warning is shown, not failed on
    assert any("kaboom in report.js" in m for m in r.page_errors), r.page_errors
    assert any("undefinedFunction" in m for m in r.page_errors), r.page_errors


def test_non_local_request_is_aborted_and_reported(browser, tmp_path):
    page = write(
        tmp_path,
        '<p>online</p>\n<script src="https://cdn.example.invalid/x.js"></script>\n'
        '<link rel="stylesheet" href="http://cdn.example.invalid/style.css">\n'
        "<script>fetch('https://api.example.invalid/data.json').catch(() => {});</script>",
    )
    r = render(page)
    print(r.report())
    assert not r.ok
    assert set(r.remote_requests) == {
        "https://cdn.example.invalid/x.js",
        "http://cdn.example.invalid/style.css",
        "https://api.example.invalid/data.json",
    }
    assert sum("non-local request" in p for p in r.problems) == 3


def test_empty_white_page_is_blank(browser, tmp_path):
    page = write(tmp_path, "", title="nothing")
    r = render(page, tmp_path / "blank.png", width=800)
    print(r.report())
    assert r.blank is True and r.ink == 0.0
    assert cv2.imread(str(tmp_path / "blank.png")).shape[1] == 800
    assert not r.images and not r.console_errors and not r.page_errors and not r.remote_requests
    assert r.problems == ["blank screenshot: 0.00000 of the pixels off the background"]


def test_command_line_prints_checks_and_exit_status(browser, tmp_path):
    """The README's documented command: a good page exits 0, a broken one 1; --clip-height crops the shot."""
    rows = "".join(f"<p>row {i}</p>" for i in range(80))  # a page taller than the viewport
    good = write(tmp_path, f'<h1>Report</h1><img src="data:image/png;base64,{png_b64()}">{rows}', name="good.html")
    bad = write(tmp_path, '<h1>Report</h1><img src="nope.png">', name="bad.html")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")  # keeps the netguard entry on PYTHONPATH

    def cli(*args) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(SCRIPT), *map(str, args)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)

    proc = cli(good, tmp_path / "good.png", "--width", "1000", "--clip-height", "500")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "images loaded: 1/1" in proc.stdout and proc.stdout.rstrip().endswith("ok")
    assert cv2.imread(str(tmp_path / "good.png")).shape[:2] == (500, 1000)
    proc = cli(bad, tmp_path / "bad.png")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL: img not loaded:" in proc.stdout and "nope.png" in proc.stdout
    full = cv2.imread(str(tmp_path / "bad.png"))
    assert full.shape[1] == 1280


def test_missing_browser_skips_here_and_fails_under_ci(monkeypatch):
    """No Chromium: a developer's run skips with the reason; CI (CI=true), which installs one, fails."""
    monkeypatch.setattr(helper, "chromium_path", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    reason = r"no /usr/bin/chromium and it could not be installed.*make browser"
    with pytest.raises(pytest.skip.Exception, match=reason):
        helper.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no /usr/bin/chromium.*CI must have it"):
        helper.require_browser()
