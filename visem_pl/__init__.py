"""visem-pl: semi-supervised pseudo-labelling of VISEM-Tracking sperm videos, under one import namespace.

    visem_pl.cli     the `visem-pl` command line (this folder)
    visem_pl.flows   Prefect flows (the repository's flows/ folder)
    visem_pl.tasks   the domain: every step as plain functions (the repository's tasks/ folder)

Imports point one way: the CLI and the flows call `tasks`, which knows nothing of either, nor of
Prefect or DVC.
"""
