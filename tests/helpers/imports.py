"""Which project modules a module imports, read from the source (every import statement, also the lazy
ones inside functions), so a stage's code can be compared with its `dvc.yaml` deps."""

from __future__ import annotations

import ast
from pathlib import Path

ROOTS = {"visem_pl.tasks": "tasks", "visem_pl.flows": "flows", "visem_pl": "visem_pl"}


def module_file(repo: Path, name: str) -> Path | None:
    """The file of project module `name` (a package's __init__.py), or None if it is not ours."""
    for prefix, folder in ROOTS.items():  # longest prefixes first
        if name == prefix or name.startswith(prefix + "."):
            rel = name[len(prefix) :].lstrip(".").replace(".", "/")
            base = repo / folder / rel if rel else repo / folder
            if (base / "__init__.py").is_file():
                return base / "__init__.py"
            if base.with_suffix(".py").is_file():
                return base.with_suffix(".py")
            return None
    return None


def imported(repo: Path, name: str) -> set[str]:
    """Project modules `name`'s source imports, at any depth of the file."""
    tree = ast.parse(module_file(repo, name).read_text(encoding="utf-8"))
    is_pkg = module_file(repo, name).name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .config import X
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if module_file(repo, m) is not None}


def closure(repo: Path, start: list[str]) -> set[str]:
    """`start` and every project module they import, directly or not, with the packages above each."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen or module_file(repo, name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += sorted(imported(repo, name))
    return seen


def files(repo: Path, modules: set[str]) -> set[str]:
    return {module_file(repo, m).relative_to(repo).as_posix() for m in modules}


CLI_MODULES = {"": "visem_pl.cli.main", "review": "visem_pl.cli.review", "bench": "visem_pl.cli.bench"}


def _top_level_imports(repo: Path, name: str) -> set[str]:
    """Project modules imported at module level (what importing `name` runs), not inside functions."""
    tree = ast.parse(module_file(repo, name).read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body:
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                out |= {sub.module} | {f"{sub.module}.{a.name}" for a in sub.names}
    return {m for m in out if module_file(repo, m) is not None}


def cli_frame(repo: Path) -> set[str]:
    """Modules every `visem-pl` command runs: the CLI modules and what they import at module level."""
    seen: set[str] = set()
    todo = list(CLI_MODULES.values())
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]
        todo += sorted(_top_level_imports(repo, name))
    return seen


def command_imports(repo: Path, group: str, command: str) -> set[str]:
    """Project modules the `visem-pl [group] command` function imports inside its body."""
    module = CLI_MODULES[group]
    tree = ast.parse(module_file(repo, module).read_text(encoding="utf-8"))
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for deco in fn.decorator_list:
            if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "command":
                name = deco.args[0].value if deco.args else fn.name.replace("_", "-")
                if name == command:
                    out: set[str] = set()
                    for sub in ast.walk(fn):
                        if isinstance(sub, ast.ImportFrom) and sub.module:
                            out |= {sub.module} | {f"{sub.module}.{a.name}" for a in sub.names}
                    return {m for m in out if module_file(repo, m) is not None}
    raise LookupError(f"no `visem-pl {group} {command}` command in {module}")


def stage_code(repo: Path, dvc_yaml: Path) -> dict[str, set[str]]:
    """Per dvc.yaml stage: every project source file its command runs (CLI frame + the command's imports,
    followed through every import)."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    frame = cli_frame(repo)
    out = {}
    for stage, spec in stages.items():
        cmd = (spec.get("do") or spec)["cmd"].split()
        assert cmd[0] == "visem-pl", f"{stage}: its command is not visem-pl: {cmd}"
        group, command = (cmd[1], cmd[2]) if cmd[1] in CLI_MODULES else ("", cmd[1])
        # The CLI modules' own lazy imports belong to the other commands; everything else is followed.
        start = (frame - set(CLI_MODULES.values())) | command_imports(repo, group, command)
        out[stage] = files(repo, frame | closure(repo, sorted(start)))
    return out


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)
