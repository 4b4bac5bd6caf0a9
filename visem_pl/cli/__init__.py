"""The `visem-pl` command line: one thin command per DVC stage and per user action.

Each command reads its options, calls one function of `visem_pl.tasks` (or `visem_pl.flows` for
`serve` and `review submit`), prints the result, and turns bad input into exit code 2.
"""
