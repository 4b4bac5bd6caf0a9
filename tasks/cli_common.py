"""What every `visem-pl` command shares: options, params sections, and how bad input exits."""
from __future__ import annotations

from pathlib import Path

import typer

EXIT_BAD_INPUT = 2


def fail(lines: list[str], extra: int = 0) -> None:
    for line in lines:
        typer.echo(line, err=True)
    if extra:
        typer.echo(f"... and {extra} more problem(s) not shown", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


PARAMS_OPT = typer.Option(Path("params.yaml"), "--params", help="The project's params.yaml.")
ROUND_OPT = typer.Option(..., "--round", "-r", min=0, help="Round number (0 = trained on labelled frames only).")


def stage_config(params: Path, name: str, cls, drop: tuple[str, ...] = ()):
    """A stage's config dataclass from its params.yaml section; bad keys/values exit 2 naming the file."""
    from tasks.params import build, load_params

    try:
        section = {k: v for k, v in (load_params(params).get(name) or {}).items() if k not in drop}
        return build(cls, section, f"{params} {name}")
    except (ValueError, TypeError) as exc:
        fail([str(exc)])


def data_root(params: Path) -> Path:
    from tasks.params import load_params

    try:
        return Path(load_params(params)["data"]["root"])
    except (KeyError, TypeError, ValueError) as exc:
        fail([f"{params}: data.root is required ({exc})"])
