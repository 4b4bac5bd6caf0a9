"""The rounds a project declares in params.yaml (`rounds`, `pseudo_rounds`): what `dvc.yaml` runs.

Round N trains on round N-1's merged set from round N-1's weights; starting a round from the
command line or a flow declares it here first, as a user would by editing params.yaml.
"""

from __future__ import annotations

from pathlib import Path

from visem_pl.tasks.workspace.io import atomic_path
from visem_pl.tasks.workspace.paths import Workspace


def round_entry(n: int) -> dict:
    """params.yaml's entry of round n: what it trains on and from (paths relative to the project)."""
    prev = Workspace().round(n - 1) if n > 0 else None
    if prev is None:
        return {"round": 0, "data": Workspace().prepared.as_posix(), "init": None}
    return {"round": n, "data": prev.merged.as_posix(), "init": prev.model_dir.as_posix()}


def declared_rounds(params: dict) -> tuple[list[int], list[int]]:
    """(rounds trained, rounds pseudo-labelled) as params.yaml declares them."""
    rounds = [int(r["round"]) for r in params.get("rounds") or []]
    return rounds, [int(r) for r in params.get("pseudo_rounds") or []]


def ensure_round(params_path: Path | str, n: int) -> bool:
    """Declare round `n` (train/evaluate and the pseudo-labelling stages) in params.yaml, keeping
    its comments; True when the file changed. Round n needs rounds 0..n-1 declared before it."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path = Path(params_path)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    # The project's style: "  - item" lists and an explicit null.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = yaml.load(path.read_text(encoding="utf-8"))
    rounds = data.get("rounds")
    pseudo = data.get("pseudo_rounds")
    if rounds is None or pseudo is None:
        raise ValueError(f"{path}: needs `rounds` and `pseudo_rounds` lists (see the project's params.yaml)")
    have = [int(r["round"]) for r in rounds]
    if have != list(range(len(have))):
        raise ValueError(
            f"{path}: `rounds` must list rounds 0, 1, 2, ... in order (dvc.yaml names stages "
            f"train@<index>); found {have}"
        )
    if n > len(have):
        raise ValueError(f"{path}: round {n} needs round {n - 1} first (declared rounds: {have or 'none'})")
    pseudo_have = [int(r) for r in pseudo]
    if n > 0 and (n - 1) not in pseudo_have:
        raise ValueError(
            f"{path}: round {n} trains on round {n - 1}'s merged set, but round {n - 1} is not "
            f"pseudo-labelled (pseudo_rounds: {pseudo_have}); run round {n - 1} first"
        )
    changed = False
    if n == len(have):
        entry = CommentedMap(round_entry(n))
        if n == 0:
            entry["init"] = (data.get("train") or {}).get("model", "models/yolov8n.yaml")
        entry.fa.set_flow_style()
        rounds.append(entry)
        changed = True
    if n not in pseudo_have:
        pseudo.append(n)
        if isinstance(pseudo, CommentedSeq):
            pseudo.fa.set_flow_style()
        changed = True
    if changed:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
    return changed
