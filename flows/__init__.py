"""Prefect flows over the `tasks/` functions: one implementation of each step, driven by Prefect.

`flows.round.pseudo_label_round` runs one round, `flows.campaign.pseudo_label_campaign` rounds
until the stop rule; `flows.serve` serves both as deployments (`visem-pl serve`).
"""
