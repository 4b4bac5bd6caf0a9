"""Which Prefect task runner maps inference over clips: `params.yaml` `orchestrate:`, or flow parameters.

threads (default): a thread pool of `infer_concurrency` clips at once in the flow's process.
dask: `DaskTaskRunner` on a new `distributed.LocalCluster` of `n_workers` single-threaded worker
processes, or on an existing cluster by `address` (`tcp://scheduler:8786`).
ray: `RayTaskRunner` (optional: `pip install prefect-ray`), a local Ray or `address` (`ray://...`).
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNERS = ("threads", "dask", "ray")


@dataclass(frozen=True)
class OrchestrateConfig:
    task_runner: str = "threads"
    address: str | None = None  # an existing Dask / Ray cluster; None = start a local one
    n_workers: int = 2  # local Dask cluster: worker processes, one clip each at a time
    infer_concurrency: int = 1  # threads: clips at once (OpenVINO already uses every core per clip)
    review_timeout_hours: float = 168.0  # how long a round waits for its experts before it fails

    def __post_init__(self):
        if self.task_runner not in RUNNERS:
            raise ValueError(f"orchestrate.task_runner must be one of {list(RUNNERS)}, got {self.task_runner!r}")
        for name in ("n_workers", "infer_concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"orchestrate.{name} must be an integer >= 1, got {value!r}")
        if self.address is not None and not (isinstance(self.address, str) and "://" in self.address):
            raise ValueError(
                f"orchestrate.address must be a cluster address like tcp://host:8786, got {self.address!r}"
            )
        if not (isinstance(self.review_timeout_hours, (int, float)) and self.review_timeout_hours > 0):
            raise ValueError(f"orchestrate.review_timeout_hours must be > 0, got {self.review_timeout_hours!r}")


def make_task_runner(cfg: OrchestrateConfig):
    if cfg.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.infer_concurrency)
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.address:
            return DaskTaskRunner(address=cfg.address)
        # Single-threaded processes: each worker holds one clip; no dashboard (no port to open).
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": cfg.n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            },
        )
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise ValueError("orchestrate.task_runner: ray needs `pip install prefect-ray`") from None
    return RayTaskRunner(address=cfg.address) if cfg.address else RayTaskRunner()
