"""The domain of the loop, as plain functions: datasets, the synthetic twin, training, inference,
pseudo-labels, the review queue, the campaign's rules and the workspace's paths.

Installed as `visem_pl.tasks`. Nothing here imports Prefect, DVC or the CLI: the `visem-pl`
commands and the Prefect flows call these functions, and `dvc.yaml` runs those commands. Each
DVC stage is one function in a `stages.py` (see the table at the top of dvc.yaml).
"""
