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
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(ConnectionRefusedError):
            s.sendto(b"x", ("203.0.113.8", 53))  # UDP, e.g. a DNS query sent by hand
    for lookup in (socket.gethostbyname, socket.gethostbyname_ex):
        with pytest.raises(socket.gaierror):
            lookup("example.invalid")
    new = pytest_netguard.attempts()[before:]
    assert any("203.0.113.7" in a for a in new) and any("203.0.113.8" in a for a in new)
    assert sum("example.invalid" in a for a in new) == 3


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
print(json.dumps({"switches": {k: v for k, v in settings.items() if isinstance(v, bool)},
                  "off": {k: settings[k] for k in offline.ULTRALYTICS_OFF if k in settings}} | {
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
    # Every on/off setting of this Ultralytics is off: the integrations we know (8.4 has no `hub` or
    # `neptune` setting any more) and any new one a later release adds.
    switches, off = out.pop("switches"), out.pop("off")
    assert {"sync", "dvc", "mlflow", "wandb", "comet", "clearml", "raytune", "tensorboard"} <= set(off)
    assert switches and all(v is False for v in switches.values()), switches
    assert out == {
        "YOLO_OFFLINE": "true",
        "YOLO_AUTOINSTALL": "false",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "n_results": 1,
    }
    assert not log.exists() or log.read_text() == "", log.read_text()
    # Ultralytics' settings file lives in the working project, not in the user's home.
    assert list((tmp_path / ".cache" / "ultralytics").rglob("settings.json"))


UNGUARDED = r"""
import errno, socket
try:
    socket.create_connection(("203.0.113.9", 443), timeout=5)
    print("reached")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc)))
"""


def test_the_suite_runs_where_only_loopback_exists():
    """Below the Python guard: a process the guard does not see (here Python in isolated mode, without
    sitecustomize) finds no route off this machine, because `make test` runs the suite in a network
    namespace (tests/netguard/run-offline)."""
    if os.environ.get("VISEM_NETNS") != "1":
        pytest.skip("not run through tests/netguard/run-offline (`make test` and CI do): Python guard only")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", UNGUARDED], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ENETUNREACH", proc.stdout + proc.stderr
