"""The test session's Prefect server: started (with its web UI), and a client of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from prefect.client.base import PrefectHttpxSyncClient

from helpers.project import BIN, env, left, start_server, stop_group
from visem_pl.tasks.workspace.offline import OFFLINE_ENV


def start_prefect(home: Path, timeout_s: float = 180) -> tuple[subprocess.Popen, PrefectServer]:
    """`prefect server start` on loopback (SQLite in `home`), serving its web UI as a user's server does;
    (process, server). The process runs in a session of its own: end it with stop_group."""
    log_path = home / "server.log"
    base = {
        **os.environ,
        **OFFLINE_ENV,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The server copies the UI's files at start: here, not into the installed package (read-only in CI).
        "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui"),
    }
    base.pop("PREFECT_API_URL", None)

    def start(port: int) -> subprocess.Popen:
        # The UI's pages call the API at this URL (its default is port 4200, not ours).
        server_env = {**base, "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
        with open(log_path, "w") as log:
            return subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                 "--analytics-off"],
                env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    proc, port = start_server(start, "/api/health", log_path, timeout_s, "prefect server")
    return proc, PrefectServer(f"http://127.0.0.1:{port}/api", home)


class PrefectServer:
    def __init__(self, url: str, home: Path):
        self.url, self.home = url, home
        # Prefect's own HTTP client, as every client of the server: a busy SQLite answers 503 ("retry"),
        # which it retries with back-off (a bare httpx call failed a CI run on one such answer).
        self.http = PrefectHttpxSyncClient(base_url=url, timeout=30, raise_on_all_errors=False)

    @property
    def ui(self) -> str:
        """The web UI's origin (http://127.0.0.1:PORT)."""
        return self.url.removesuffix("/api")

    @property
    def env(self) -> dict:
        """What a client process needs: this server, and results kept under this session's home."""
        return {
            "PREFECT_API_URL": self.url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def get(self, path: str):
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def input(self, run_id: str, key: str):
        """A flow run input's value (stored as JSON text)."""
        r = self.http.get(f"/flow_runs/{run_id}/input/{key}")
        r.raise_for_status()
        return json.loads(r.text)

    def post(self, path: str, body: dict):
        return self.http.post(path, json=body)

    def close(self) -> None:
        self.http.close()


class FlowProcess:
    """Python code running flows in a process (and session) of its own, talking to `server`: a review wait
    there pauses in the process. Its output goes to files, never to a pipe nobody reads while waiting (a
    chatty flow would block). `args` are the code's sys.argv[1:], `extra_env` its extra environment."""

    def __init__(self, ws: Path, server, code: str, folder: Path, args=(), **extra_env: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.log = folder / "out.txt", folder / "log.txt"
        with open(self.out, "w") as out, open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "python"), "-c", code, *args],
                cwd=ws,
                env=env(**server.env, **extra_env),
                stdout=out,
                stderr=log,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def result(self, timeout: float = 600) -> dict:
        """The JSON the code printed last, once the process has ended by itself (exit 0)."""
        try:
            rc = self.proc.wait(left(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the flow did not finish in time:\n{self.log_tail()}") from None
        assert rc == 0, self.log_tail()
        return json.loads(self.out.read_text().strip().splitlines()[-1])

    def kill(self) -> int:
        """SIGKILL to the whole process group, as a crash or the OOM killer would end it."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(30)

    def stop(self) -> None:
        stop_group(self.proc)


def paused_run(server: PrefectServer, name: str, child: FlowProcess, key: str, timeout: float = 600) -> dict:
    """Flow run `name` (run by `child`) once it waits with pause key `key` (`review-round-N-attempt`); fails
    with the child's log when the child ends first or the wait does not come within `timeout` seconds."""
    import time

    deadline = time.monotonic() + left(timeout)
    while True:
        runs = server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}}).json()
        state = runs[0]["state"] if runs else None
        if state and state["type"] == "PAUSED" and state["state_details"].get("pause_key") == key:
            return runs[0]
        assert child.alive(), f"flow run {name} ended before waiting at {key}:\n{child.log_tail()}"
        assert time.monotonic() < deadline, f"flow run {name} never waited at {key}: {state}\n{child.log_tail()}"
        time.sleep(0.5)
