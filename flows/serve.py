"""Serve both flows as deployments from this process (`visem-pl serve`): the quickest local setup.

    prefect server start                      # another terminal; SQLite in ~/.prefect by default
    visem-pl serve                            # in the project folder
    prefect deployment run 'pseudo-label-round/visem-pl' --param round=1

For workers, work pools (process, Docker, Kubernetes) and a PostgreSQL-backed server, see
prefect.yaml and README.
"""
from __future__ import annotations

DEPLOYMENT = "visem-pl"


def deployments(name: str = DEPLOYMENT):
    from flows.campaign import pseudo_label_campaign
    from flows.round import pseudo_label_round

    tags = ["visem-pl"]
    return [pseudo_label_round.to_deployment(name=name, tags=tags),
            pseudo_label_campaign.to_deployment(name=name, tags=tags)]


def serve(name: str = DEPLOYMENT, limit: int = 2) -> None:
    """Serve both deployments; `limit` flow runs at once (a round owns the workspace anyway)."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(name), limit=limit)


if __name__ == "__main__":  # pragma: no cover
    serve()
