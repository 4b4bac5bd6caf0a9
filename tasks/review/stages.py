"""The DVC stage review@N: answer round N's review queue.

Experts' answers rule once their queue exists in `review/round-N/` (a Prefect round's review
wait, or a `visem-pl review export`), also on synthetic data; otherwise, on synthetic data, the
simulated expert answers. On real data the stage stops, saying what is left and how, until every
queued item is reviewed.
"""

from __future__ import annotations

from pathlib import Path

from visem_pl.tasks.review.queue import REVIEWED, read_queue
from visem_pl.tasks.review.store import QueueStore
from visem_pl.tasks.workspace.io import write_json
from visem_pl.tasks.workspace.paths import Workspace


class ReviewPending(RuntimeError):
    """Real data: the experts' answers for this round are not all there yet."""


def review_stage(ws: Workspace, n: int) -> dict:
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.review.expert import expert_config, simulate_review

    cfg = expert_config(ws)
    paths = ws.round(n)
    truth = truth_for(ws.data_root())
    experts = QueueStore(paths.review_folder)
    if truth is not None and not experts.exists():
        return simulate_review(n, paths.pseudo, paths.reviewed, truth, ws.clips(), cfg)
    return collect_review(n, paths.pseudo, paths.reviewed, experts, ws.dataset_id(), model_fitness(ws, n))


def model_fitness(ws: Workspace, n: int) -> float | None:
    """Round n's validation fitness (evaluate@N, which dvc.yaml runs before this stage, so a round that
    waits for its experts already shows its own model's score), said to whoever the round waits for."""
    import json

    path = ws.round(n).metrics / "eval.json"
    return json.loads(path.read_text())["overall"]["fitness"] if path.exists() else None


def collect_review(
    round_n: int,
    pseudo_dir: Path,
    out_dir: Path,
    store: QueueStore,
    dataset: str | None = None,
    fitness: float | None = None,
) -> dict:
    """Copy the experts' answers of every queued item from `store` (refused when it was made for another
    dataset than `dataset`, an id), or say what is left and how (`fitness`: the round's model's, said)."""
    if store.exists():
        store.check_dataset(dataset)
        store.recover()
    model = f" (its model: validation fitness {fitness:.3f})" if fitness is not None else ""
    queue = read_queue(Path(pseudo_dir) / "queue.csv")
    items = list(queue["item"])
    how = (
        f"export with `visem-pl review export --round {round_n} --format labelstudio` (or cvat), "
        f"import the experts' file with `visem-pl review import --round {round_n} FILE --reviewer NAME`, "
        f"then `dvc repro` again"
    )
    if items and not store.exists():
        raise ReviewPending(
            f"round {round_n}{model} is waiting for {len(items)} reviewed items in {store.root}/: {how}"
        )
    if store.exists() and list(store.queue()["item"]) != items:
        raise ValueError(
            f"{store.queue_csv}:0: answers a different queue than {Path(pseudo_dir) / 'queue.csv'} "
            f"(the filter ran again); move {store.root} away and review the new queue"
        )
    if items:
        state = store.state()["items"]
        left = [i for i in items if state[i]["state"] != REVIEWED]
        if left:
            raise ReviewPending(
                f"round {round_n}{model} is waiting for {len(left)} of {len(items)} items "
                f"(e.g. {', '.join(left[:3])}) in {store.root}/: {how}"
            )
    store.copy_labels(items, Path(out_dir))
    reviewers = sorted({store.state()["items"][i]["reviewer"] for i in items}) if items else []
    stats = {"reviewer": "experts", "items": len(items), "queued": len(items), "reviewers": reviewers}
    write_json(Path(out_dir) / "stats.json", stats)
    return stats
