"""What every `visem-pl` command shares: options, the workspace, and how bad input exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from visem_pl.tasks.workspace.errors import ConfigError
from visem_pl.tasks.workspace.paths import Workspace

EXIT_BAD_INPUT = 2


def fail(lines: list[str], extra: int = 0) -> None:
    for line in lines:
        typer.echo(line, err=True)
    if extra:
        typer.echo(f"... and {extra} more problem(s) not shown", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def bad_input(*kinds: type[BaseException]) -> Iterator[None]:
    """Exit 2 with the message's lines on a params.yaml problem or on any of `kinds`."""
    try:
        yield
    except (ConfigError, *kinds) as exc:
        fail(getattr(exc, "lines", None) or [str(exc)])


PARAMS_OPT = typer.Option(Path("params.yaml"), "--params", help="The project's params.yaml.")
ROUND_OPT = typer.Option(..., "--round", "-r", min=0, help="Round number (0 = trained on labelled frames only).")


def workspace(params: Path) -> Workspace:
    """The project folder the command runs in (DVC runs every stage from it) and its params.yaml."""
    return Workspace(Path("."), params)
