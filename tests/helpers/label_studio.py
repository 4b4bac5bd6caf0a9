"""The Label Studio server the live review tests start: its own virtual environment, no outbound traffic."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LS_VENV = REPO / ".ls-venv"
MAKE_TARGET = "make ls-venv"
START_TIMEOUT_S = 300
INITIAL_USER = "expert@visem-pl.test"  # the server's first user, whose key the tests push and pull with


def label_studio_bin(venv: Path = LS_VENV) -> Path:
    """The server's entry point; fails (never skips) when its virtual environment is missing."""
    exe = venv / "bin" / "label-studio"
    if not exe.exists():
        pytest.fail(
            f"{exe} is missing: Label Studio lives in its own virtual environment; build it with "
            f"`{MAKE_TARGET}` (CI: .ci/run runs `make ls-venv test`)",
            pytrace=False,
        )
    return exe


@dataclass
class LabelStudioServer:
    url: str
    token: str
    root: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    log: Path
    started_in_s: float


def server_env(base: Path, root: Path, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))}
    for k in ("HOST", "PORT", "DEBUG", "DJANGO_DB", "DATABASE_NAME"):
        env.pop(k, None)
    env.update(
        {
            "HOME": str(base / "home"),
            "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
            "LABEL_STUDIO_USERNAME": INITIAL_USER,
            "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
            "LABEL_STUDIO_USER_TOKEN": token,  # set for the initial user...
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # ...and legacy tokens on for its organisation
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
            # No outbound traffic: no Sentry (the default DSN is Heartex's), no usage analytics, no PyPI
            # version check, no converter resource downloads, feature flags from the bundled file.
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "CONVERTER_DOWNLOAD_RESOURCES": "false",
            "FEATURE_FLAGS_OFFLINE": "true",
        }
    )
    return env


def add_user(server: LabelStudioServer, email: str) -> str:
    """Another expert in the running server's organisation, and an API token of their own (what they annotate
    with it is `completed_by` them). Label Studio 1.23 has no API for another user's token, so this does what
    the server's start does for the initial user: `label-studio init` on the same data dir creates the user,
    adds it to the organisation and sets its legacy token."""
    token = secrets.token_hex(20)
    base = server.log.parent
    env = {**server_env(base, server.root, token), "LABEL_STUDIO_USERNAME": email}
    proc = subprocess.run(
        [str(label_studio_bin()), "init", "--quiet"],
        cwd=base,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(f"label-studio init for {email} failed ({proc.returncode}): {proc.stderr[-2000:]}", pytrace=False)
    return token
