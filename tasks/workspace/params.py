"""Read `params.yaml`: one section per stage, as in DVC's example projects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml


def load_params(path: Path | str) -> dict:
    """The whole file as a dict; a YAML error names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}:0: cannot be read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise ValueError(f"{path}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}:1: expected a mapping of sections, found {type(data).__name__}")
    return data


def build(cls, section: dict, where: str):
    """Instantiate a config dataclass from a params section, refusing unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    return cls(**values)
