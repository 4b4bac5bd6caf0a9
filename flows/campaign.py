"""`pseudo-label-campaign`: rounds one after another until the stop rule of params.yaml `campaign:`."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from visem_pl.flows.round import Runner, _Held, options, run_round
from visem_pl.tasks.campaign.rounds import declared_rounds
from visem_pl.tasks.workspace.paths import Workspace


def next_round(workspace, params_file: str) -> int:
    """The first round not pseudo-labelled yet, by params.yaml."""
    _, pseudo = declared_rounds(Workspace(workspace, params_file).params())
    return max(pseudo) + 1 if pseudo else 0


@flow(name="pseudo-label-campaign", log_prints=True)
def pseudo_label_campaign(
    start_round: Annotated[int | None, Field(ge=0)] = None,
    workspace: str = ".",
    params_file: str = "params.yaml",
    task_runner: Runner = None,
    dask_address: str | None = None,
    review_timeout_hours: Annotated[float | None, Field(gt=0)] = None,
    commit: bool = True,
    push: bool = True,
):
    """Run rounds (each with its review wait) from `start_round` (default: the first round not done
    yet) until params.yaml `campaign:` says stop: max_rounds reached, validation fitness gain below
    min_fitness_gain, or fewer than min_new_accepted new accepted pseudo-label boxes."""
    from visem_pl.tasks.campaign.stop import CampaignConfig, stop_reason
    from visem_pl.tasks.report import collect

    opts = options(workspace, params_file, task_runner, dask_address, review_timeout_hours, commit, push)
    ws = Workspace(opts.workspace, params_file)
    cfg = ws.section("campaign", CampaignConfig)
    n = next_round(opts.workspace, params_file) if start_round is None else start_round
    logger = get_run_logger()
    done = []
    with _Held(opts.workspace, n, "pseudo-label-campaign"):
        while True:
            rows = list(collect(ws)["rounds"].values())
            reason = stop_reason([r for r in rows if r["round"] < n], cfg) if n > 0 else None
            if reason:
                break
            result = run_round(n, opts)
            if result.get("stopped"):
                return result["state"]
            done.append(n)
            rows = list(collect(ws)["rounds"].values())
            reason = stop_reason([r for r in rows if r["round"] <= n], cfg)
            if reason:
                break
            n += 1
    logger.info("campaign stops: %s", reason)
    create_markdown_artifact(
        key="campaign-stop", markdown=f"# Campaign stopped\n\nRounds run: {done or 'none'}.\n\nWhy: {reason}."
    )
    return {"rounds": done, "stopped_because": reason}
