"""Serve both flows as deployments from this process (`visem-pl serve`): the quickest local setup.

    prefect server start                      # another terminal; SQLite in ~/.prefect by default
    visem-pl serve                            # in the project folder; waits for the server to answer
    prefect deployment run 'pseudo-label-round/visem-pl' --param round=1

For workers, work pools (process, Docker, Kubernetes) and a PostgreSQL-backed server, see
prefect.yaml and README.
"""

from __future__ import annotations

DEPLOYMENT = "visem-pl"


def deployments(name: str = DEPLOYMENT):
    from visem_pl.flows.campaign import pseudo_label_campaign
    from visem_pl.flows.round import pseudo_label_round

    tags = ["visem-pl"]
    return [
        pseudo_label_round.to_deployment(name=name, tags=tags),
        pseudo_label_campaign.to_deployment(name=name, tags=tags),
    ]


class NoServer(RuntimeError):
    """No Prefect server to serve the deployments to."""


def wait_for_server(timeout_s: float = 90.0) -> str:
    """The API URL once its server answers (a server just started takes ~15 s to come up)."""
    import time

    from prefect import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        # Without it Prefect would start a throwaway server inside this process that nobody else can reach.
        raise NoServer(
            "PREFECT_API_URL is not set: start `prefect server start` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or `prefect config set ...`)"
        )
    deadline, told = time.monotonic() + timeout_s, False
    while True:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
        if problem is None:
            return url
        if time.monotonic() > deadline:
            raise NoServer(
                f"no Prefect server answers at {url} after {timeout_s:.0f} s ({problem}); "
                f"start one with `prefect server start`"
            )
        if not told:
            print(f"waiting for the Prefect server at {url} ...", flush=True)
            told = True
        time.sleep(1)


def serve(name: str = DEPLOYMENT, limit: int = 2) -> None:
    """Serve both deployments; `limit` flow runs at once (a round owns the workspace anyway)."""
    from prefect import serve as prefect_serve

    wait_for_server()
    prefect_serve(*deployments(name), limit=limit)


if __name__ == "__main__":  # pragma: no cover
    serve()
