"""A client of the test session's Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx


class PrefectServer:
    def __init__(self, url: str, home: Path):
        self.url, self.home = url, home

    @property
    def env(self) -> dict:
        """What a client process needs: this server, and results kept under this session's home."""
        return {
            "PREFECT_API_URL": self.url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def get(self, path: str):
        r = httpx.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def input(self, run_id: str, key: str):
        """A flow run input's value (stored as JSON text)."""
        r = httpx.get(f"{self.url}/flow_runs/{run_id}/input/{key}", timeout=30)
        r.raise_for_status()
        return json.loads(r.text)

    def post(self, path: str, body: dict):
        r = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        return r
