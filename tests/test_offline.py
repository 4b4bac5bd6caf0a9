"""The product never reaches the network: the guard works, and real library use trips nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import netguard
import pytest
import pytest_netguard


def test_guard_refuses_and_records_non_loopback():
    before = len(pytest_netguard.attempts())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(ConnectionRefusedError):
            s.connect(("203.0.113.7", 443))  # TEST-NET-3: refused before any packet leaves
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.invalid", 443)
    new = pytest_netguard.attempts()[before:]
    assert any("203.0.113.7" in a for a in new) and any("example.invalid" in a for a in new)


def test_guard_allows_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5):
            pass


OFFLINE_SCRIPT = r"""
import json, os
from visem_pl.tasks.workspace import offline
offline.configure()
offline.quiet_ultralytics()
import numpy as np
from ultralytics import YOLO, settings
model = YOLO("yolov8n.yaml")
result = model.predict(np.zeros((96, 128, 3), np.uint8), imgsz=64, verbose=False)
import prefect, dvc.api  # noqa: F401  (import-time phone-home would show up in the log)
print(json.dumps({k: settings.get(k, False) for k in ("sync", "hub", "dvc", "mlflow", "clearml", "comet")} | {
    "YOLO_OFFLINE": os.environ["YOLO_OFFLINE"], "YOLO_AUTOINSTALL": os.environ["YOLO_AUTOINSTALL"],
    "DVC_NO_ANALYTICS": os.environ["DVC_NO_ANALYTICS"],
    "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"],
    "n_results": len(result)}))
"""


def test_ultralytics_prefect_dvc_run_without_network(tmp_path):
    log = tmp_path / "attempts.log"
    # Start from an environment without our settings: the script must set them up itself.
    from visem_pl.tasks.workspace.offline import OFFLINE_ENV

    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and k != "YOLO_CONFIG_DIR"}
    env[netguard.LOG_ENV] = str(log)
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "sync": False,
        "hub": False,
        "dvc": False,
        "mlflow": False,
        "clearml": False,
        "comet": False,
        "YOLO_OFFLINE": "true",
        "YOLO_AUTOINSTALL": "false",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "n_results": 1,
    }
    assert not log.exists() or log.read_text() == "", log.read_text()
    # Ultralytics' settings file lives in the working project, not in the user's home.
    assert list((tmp_path / ".cache" / "ultralytics").rglob("settings.json"))
