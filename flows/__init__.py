"""Prefect flows over the `visem_pl.tasks` functions: one implementation of each step, driven by Prefect.

Installed as `visem_pl.flows`. `round.pseudo_label_round` runs one round, `campaign.pseudo_label_campaign`
rounds until the stop rule; `serve` serves both as deployments (`visem-pl serve`). Steps that DVC
must record run as their `dvc.yaml` stage (`versioning.repro`).
"""
