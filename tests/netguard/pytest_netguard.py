"""pytest plugin: run the whole suite, and every subprocess it starts, behind netguard.

Any attempt to reach a non-loopback address fails the session, with the attempts listed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import netguard

_HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    fd, log = tempfile.mkstemp(prefix="netguard-", suffix=".log")
    os.close(fd)
    os.environ[netguard.LOG_ENV] = log
    paths = [str(_HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    netguard.install()


def attempts() -> list[str]:
    return Path(os.environ[netguard.LOG_ENV]).read_text(encoding="utf-8").splitlines()


def pytest_sessionfinish(session, exitstatus):
    seen = [a for a in attempts() if "203.0.113." not in a and "example.invalid" not in a]
    if seen:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line("netguard: the suite tried to reach the network:", red=True)
            for line in seen:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = 1
