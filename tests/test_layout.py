"""The structure the code promises: imports point one way, every package is installed, and every
dvc.yaml stage depends on all the code it runs (read from the imports; test_pipeline_dvc.py proves
it with `dvc status` in a finished workspace)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib
import yaml
from helpers.imports import covered, module_file, stage_code

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_TASKS = ("visem_pl.flows", "visem_pl.cli", "prefect", "prefect_dask", "dvc")


def all_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tasks").rglob("*.py")))
def test_tasks_know_nothing_of_flows_cli_prefect_or_dvc(path):
    bad = sorted(
        m for m in all_imports(REPO / path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_TASKS)
    )
    assert not bad, f"{path} imports {bad}: tasks/ sits below the CLI and the flows"


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "flows").rglob("*.py")))
def test_flows_never_call_the_cli(path):
    """Flows call the domain directly; only flows/versioning.py runs commands (dvc, git)."""
    imports = all_imports(REPO / path)
    assert not any(m.startswith("visem_pl.cli") for m in imports), path
    if path != "flows/versioning.py":
        assert "subprocess" not in imports, f"{path} runs commands; call visem_pl.tasks instead"


def test_no_top_level_tasks_or_flows_imports():
    for folder in ("tasks", "flows", "visem_pl", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            bad = [m for m in all_imports(path) if m.split(".")[0] in ("tasks", "flows")]
            assert not bad, f"{path.relative_to(REPO)} imports {bad}; the namespace is visem_pl.tasks / visem_pl.flows"


def test_every_package_is_installed():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for prefix, folder in (("visem_pl.tasks", "tasks"), ("visem_pl.flows", "flows"), ("visem_pl", "visem_pl")):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).as_posix()
            found.add(prefix if rel == "." else f"{prefix}.{rel.replace('/', '.')}")
    assert found == listed
    assert all(module_file(REPO, p) is not None for p in listed)


def test_every_subpackage_says_what_it_does():
    for init in (REPO / "tasks").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 60, f"{init.relative_to(REPO)}: no docstring saying what the subpackage does"


def test_dvc_deps_cover_every_module_a_stage_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, needed in stage_code(REPO, REPO / "dvc.yaml").items():
        deps = [d for d in (stages[stage].get("do") or stages[stage])["deps"] if "${" not in d]
        missing = sorted(f for f in needed if not covered(f, deps))
        assert not missing, f"dvc.yaml stage {stage} runs {missing} but does not depend on them"


def test_every_module_and_benchmark_imports():
    """A moved name is an ImportError only when its module runs: import every one (benchmarks included)."""
    import importlib
    import importlib.util

    for prefix, folder in (("visem_pl.tasks", "tasks"), ("visem_pl.flows", "flows"), ("visem_pl", "visem_pl")):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("").as_posix().replace("/", ".")
            name = prefix if rel == "__init__" else f"{prefix}.{rel.removesuffix('.__init__')}"
            importlib.import_module(name)
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # each runs only under __main__
