"""Several experts' annotations of one frame (Label Studio overlap), from Label Studio JSON export files, no
server: the rules of params.yaml `review.multiple_annotations` (latest, refuse, agree, a ground-truth mark
winning, skipped annotations no answer, three annotators voting), who is recorded as each item's annotator,
the journaled import through `visem-pl review import` and what `review status` shows of it.
(tests/test_label_studio_live.py drives the same with two users of a real Label Studio.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.label_studio import REPO
from helpers.review import ITEMS, KILL_AFTER, A, B, expected_answers, new_store, parse_labels, region
from helpers.trees import tree_digest

from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.review.exchange import LABELSTUDIO, export_queue, overlap, read_answers
from visem_pl.tasks.review.exchange import labelstudio as ls
from visem_pl.tasks.review.expert import expert_config
from visem_pl.tasks.review.priority import queue_config
from visem_pl.tasks.review.queue import EXPORTED, REVIEWED
from visem_pl.tasks.workspace.errors import ConfigError
from visem_pl.tasks.workspace.paths import Workspace

# One frame's boxes [cls, cx, cy, w, h]: two sperm, a cluster; B1 moved by 3 px (IoU 0.82 with B1), B3
# relabelled as sperm, a pinhead.
B1, B1_MOVED = [0, 0.30, 0.30, 0.05, 0.05], [0, 0.305, 0.30, 0.05, 0.05]
B2, B3 = [0, 0.60, 0.50, 0.05, 0.05], [1, 0.40, 0.70, 0.10, 0.08]
B3_SPERM, B4 = [0, 0.40, 0.70, 0.10, 0.08], [2, 0.10, 0.10, 0.03, 0.03]
ALICE = {"id": 1, "email": "alice@lab.test", "first_name": "Alice", "last_name": "A"}
BOB = {"id": 2, "email": "bob@lab.test", "first_name": "", "last_name": ""}
CAROL = {"id": 3, "email": "", "first_name": "Carol", "last_name": "C"}  # no e-mail: her name
DAVE = {"id": 4, "email": "dave@lab.test"}


def note(aid: int, by, rows: list[list], at: str, updated: str | None = None, **flags) -> dict:
    """One annotation as Label Studio's JSON export writes it."""
    return {
        "id": aid,
        "completed_by": by,
        "result": [region(*r, f"r{aid}-{j}") for j, r in enumerate(rows)],
        "was_cancelled": flags.get("was_cancelled", False),
        "ground_truth": flags.get("ground_truth", False),
        "created_at": at,
        "updated_at": updated or at,
        "lead_time": 3.0,
    }


def task(k: int, item: str, *annotations: dict, batch: str | None = None) -> dict:
    data = {"image": f"/data/local-files/?d=images/{item}.jpg", "item": item, "clip": item.split("_frame_")[0]}
    if batch:
        data["batch"] = batch
    return {"id": k, "data": data, "annotations": list(annotations), "predictions": [], "drafts": []}


def answers_of(tmp_path: Path, tasks: list[dict], rule: str, reviewer: str | None = "dr-file"):
    """Write the export and read it back as an import does."""
    path = tmp_path / f"export-{rule}.json"
    path.write_text(json.dumps(tasks))
    return read_answers(path, LABELSTUDIO, rule=rule, reviewer=reviewer)


def rows(boxes) -> list[list]:
    return [[int(b[0]), *map(float, b[1:])] for b in boxes]


def same_rows(got, want) -> bool:
    return [g[0] for g in got] == [w[0] for w in want] and all(
        g[1:] == pytest.approx(w[1:], abs=1.5e-6) for g, w in zip(got, want)
    )


# --- the rules, one task at a time ------------------------------------------------------------------


T0, T1, T2 = "2024-05-02T09:00:00.000000Z", "2024-05-02T10:00:00.000000Z", "2024-05-02T11:00:00.000000Z"


def test_latest_takes_the_most_recently_updated_answer(tmp_path):
    # Alice created hers last, but Bob updated his after that: his is the latest.
    tasks = [task(7, "c_frame_0", note(11, ALICE, [B1, B2, B3], T1), note(12, BOB, [B1_MOVED, B2, B3_SPERM], T0, T2))]
    got = answers_of(tmp_path, tasks, overlap.LATEST)
    assert got.problems == [] and got.requeued == []
    ((item, boxes),) = got.boxes
    assert item == "c_frame_0" and same_rows(rows(boxes), [B1_MOVED, B2, B3_SPERM])
    who = got.who[item]
    assert (who["reviewer"], who["rule"], who["annotators"]) == (
        "bob@lab.test",
        "latest",
        ["alice@lab.test", "bob@lab.test"],
    )
    # B1 and B2 matched, the cluster is a sperm for Bob: F1 = 2 x 2 / (3 + 3).
    assert who["agreement"] == [{"annotators": ["alice@lab.test", "bob@lab.test"], "f1": pytest.approx(4 / 6)}]
    # The same time: the later annotation id.
    tasks = [task(7, "c_frame_0", note(12, BOB, [B2], T1), note(11, ALICE, [B1], T1))]
    assert same_rows(rows(answers_of(tmp_path, tasks, overlap.LATEST).boxes[0][1]), [B2])


def test_skipped_annotations_are_no_answer(tmp_path):
    tasks = [
        # Bob skipped the frame after Alice answered it: Alice's answer, as if alone.
        task(1, "c_frame_0", note(11, ALICE, [B1], T0), note(12, BOB, [B2], T1, was_cancelled=True)),
        # Everyone skipped: unanswered, not an empty answer.
        task(2, "c_frame_1", note(13, ALICE, [], T0, was_cancelled=True), note(14, BOB, [B2], T0, was_cancelled=True)),
        # A skipped ground-truth mark does not win either.
        task(3, "c_frame_2", note(15, ALICE, [B1], T0, was_cancelled=True, ground_truth=True), note(16, BOB, [B4], T0)),
    ]
    for rule in overlap.RULES:
        got = answers_of(tmp_path, tasks, rule)
        assert got.problems == [] and got.requeued == [] and got.unanswered == ["c_frame_1"], rule
        assert [i for i, _ in got.boxes] == ["c_frame_0", "c_frame_2"], rule
        assert same_rows(rows(got.boxes[0][1]), [B1]) and same_rows(rows(got.boxes[1][1]), [B4]), rule
        assert got.who["c_frame_0"] == {
            "reviewer": "alice@lab.test",
            "taken_from": ["alice@lab.test"],
            "annotators": ["alice@lab.test"],
            "rule": "single",
            "agreement": [],
        }


def test_the_ground_truth_mark_wins_over_every_rule(tmp_path):
    tasks = [task(1, "c_frame_0", note(11, ALICE, [B1, B3], T0, ground_truth=True), note(12, BOB, [B2], T2))]
    for rule in overlap.RULES:
        got = answers_of(tmp_path, tasks, rule)
        assert got.problems == [] and [i for i, _ in got.boxes] == ["c_frame_0"], rule
        assert same_rows(rows(got.boxes[0][1]), [B1, B3]), rule
        assert (got.who["c_frame_0"]["rule"], got.who["c_frame_0"]["reviewer"]) == ("ground_truth", "alice@lab.test")
    # Two marked: the rule decides between them (refuse refuses, naming the marks), the unmarked one is out.
    tasks = [
        task(
            1,
            "c_frame_0",
            note(11, ALICE, [B1], T0, ground_truth=True),
            note(12, BOB, [B2], T1, ground_truth=True),
            note(13, DAVE, [B4], T2),
        )
    ]
    assert same_rows(rows(answers_of(tmp_path, tasks, overlap.LATEST).boxes[0][1]), [B2])
    (problem,) = answers_of(tmp_path, tasks, overlap.REFUSE).problems
    assert problem[0] == "c_frame_0" and "2 annotations marked ground truth on one task" in problem[1]


def test_refuse_names_the_item_task_and_annotators(tmp_path):
    tasks = [
        task(41, "c_frame_0", note(11, ALICE, [B1], T0), note(12, BOB, [B1], T1)),
        task(42, "c_frame_1", note(13, ALICE, [B2], T0)),
    ]
    got = answers_of(tmp_path, tasks, overlap.REFUSE)
    assert got.problems == [
        (
            "c_frame_0",
            "2 annotations on one task (task 41, by alice@lab.test, bob@lab.test) and params.yaml "
            "review.multiple_annotations is refuse: keep one in Label Studio, mark one as ground truth, or choose "
            "latest or agree",
        )
    ]
    assert [i for i, _ in got.boxes] == ["c_frame_1"]


def test_agree_keeps_agreed_boxes_and_requeues_a_split_frame(tmp_path):
    tasks = [
        # Both drew the same three boxes (B1 3 px apart): taken, B1 as the mean of the two.
        task(1, "c_frame_0", note(11, ALICE, [B1, B2, B3], T0), note(12, BOB, [B2, B1_MOVED, B3], T1)),
        # Bob calls the cluster a sperm and adds a pinhead: they split on three boxes, agree on two.
        task(2, "c_frame_1", note(13, ALICE, [B1, B2, B3], T0), note(14, BOB, [B1, B2, B3_SPERM, B4], T1)),
        # Both saw nothing: agreed, no object.
        task(3, "c_frame_2", note(15, ALICE, [], T0), note(16, BOB, [], T1)),
    ]
    got = answers_of(tmp_path, tasks, overlap.AGREE)
    assert got.problems == []
    answered = dict(got.boxes)
    assert set(answered) == {"c_frame_0", "c_frame_2"} and answered["c_frame_2"] == []
    assert same_rows(rows(answered["c_frame_0"]), [[0, 0.3025, 0.30, 0.05, 0.05], B2, B3])
    assert got.who["c_frame_0"]["reviewer"] == "alice@lab.test, bob@lab.test"
    assert got.who["c_frame_2"]["agreement"][0]["f1"] == 1.0
    ((item, why),) = got.requeued
    assert item == "c_frame_1"
    assert why.startswith("annotators alice@lab.test, bob@lab.test disagree on 3 box(es) (agree on 2;")
    assert got.who[item]["rule"] == "agree" and got.who[item]["agreement"][0]["f1"] == pytest.approx(4 / 7)


def test_agree_with_three_annotators_keeps_what_a_majority_drew(tmp_path):
    # B1 by all, B2 by Alice and Bob, the cluster by Alice and Carol (Bob: a sperm there, outvoted), the
    # pinhead by Carol alone (outvoted): the frame is taken with B1, B2 and the cluster.
    tasks = [
        task(
            1,
            "c_frame_0",
            note(11, ALICE, [B1, B2, B3], T0),
            note(12, BOB, [B1_MOVED, B2, B3_SPERM], T1),
            note(13, CAROL, [B3, B1, B4], T2),
        )
    ]
    got = answers_of(tmp_path, tasks, overlap.AGREE)
    assert got.problems == [] and got.requeued == []
    ((_, boxes),) = got.boxes
    assert same_rows(rows(boxes), [[0, (0.30 + 0.305 + 0.30) / 3, 0.30, 0.05, 0.05], B2, B3])
    who = got.who["c_frame_0"]
    assert who["annotators"] == ["alice@lab.test", "bob@lab.test", "Carol C"]
    assert [p["annotators"] for p in who["agreement"]] == [
        ["alice@lab.test", "bob@lab.test"],
        ["alice@lab.test", "Carol C"],
        ["bob@lab.test", "Carol C"],
    ]
    assert [p["f1"] for p in who["agreement"]] == pytest.approx([4 / 6, 4 / 6, 2 / 6])
    # Four annotators split two against two on the cluster's class: no majority, back to the queue.
    four = [task(1, "c_frame_0", *tasks[0]["annotations"][:2], note(13, CAROL, [B1, B2, B3], T2),
                 note(14, DAVE, [B1, B2, B3_SPERM], T2))]  # fmt: skip
    got = answers_of(tmp_path, four, overlap.AGREE)
    assert got.boxes == [] and "disagree on 2 box(es) (agree on 2;" in got.requeued[0][1]


def test_matching_is_one_to_one_by_class_and_iou():
    # Two of Alice's boxes on one of Bob's: one pair; a box of another class never matches.
    assert overlap.matches([tuple(B1), tuple(B1_MOVED)], [tuple(B1)]) == [(0, 0)]
    assert overlap.matches([tuple(B3)], [tuple(B3_SPERM)]) == []
    far = (0, 0.33, 0.30, 0.05, 0.05)  # 19 px off a 32 px box: IoU 0.25
    assert overlap.matches([tuple(B1)], [far]) == [] and overlap.f1([tuple(B1)], [far]) == 0.0
    assert overlap.f1([], []) == 1.0 and overlap.f1([tuple(B1)], []) == 0.0


def test_annotators_named_by_the_export_or_the_importer(tmp_path):
    # Ids only (Label Studio's default export) and one user: the importer's --reviewer names them.
    one = [task(1, "c_frame_0", note(11, 5, [B1], T0)), task(2, "c_frame_1", note(12, 5, [B2], T0))]
    assert {w["reviewer"] for w in answers_of(tmp_path, one, overlap.LATEST).who.values()} == {"dr-file"}
    # Not a Label Studio user (the simulated expert writes its name as text): the importer's name too, as
    # `review submit --reviewer` names who answered a simulated export.
    sim = [task(1, "c_frame_0", note(11, "simulated-expert", [B1], T0))]
    assert answers_of(tmp_path, sim, overlap.LATEST, reviewer="dr-expert").who["c_frame_0"]["reviewer"] == "dr-expert"
    # Ids of two users: one name would hide who disagreed with whom, so each is its Label Studio id.
    two = [task(1, "c_frame_0", note(11, 5, [B1], T0), note(12, 6, [B1], T1))]
    who = answers_of(tmp_path, two, overlap.LATEST).who["c_frame_0"]
    assert who["annotators"] == ["labelstudio-user-5", "labelstudio-user-6"]
    # A live pull names them from the server's users; objects (exports with annotator details) name themselves.
    assert ls.parse_export(two, users={5: "eve@lab.test", 6: "fay@lab.test"}).who["c_frame_0"]["annotators"] == [
        "eve@lab.test",
        "fay@lab.test",
    ]
    assert (
        ls.user_name({"id": 9, "email": "", "first_name": "", "last_name": ""}, {9: "gus@lab.test"}) == "gus@lab.test"
    )


def test_a_bad_region_names_whose_annotation(tmp_path):
    bad = note(12, BOB, [B1], T1)
    bad["result"][0]["value"]["rectanglelabels"] = ["tail"]
    got = answers_of(tmp_path, [task(1, "c_frame_0", note(11, ALICE, [B1], T0), bad)], overlap.LATEST)
    assert got.problems == [("c_frame_0", "annotation 12 by bob@lab.test: region r12-0: unknown label 'tail' "
                                          "(known: sperm, cluster, small_or_pinhead)")]  # fmt: skip
    assert got.boxes == [] and got.who == {}
    # Which answer is the latest is not guessed from a time that is not one.
    late = note(12, BOB, [B2], T1, "yesterday")
    got = answers_of(tmp_path, [task(1, "c_frame_0", note(11, ALICE, [B1], T0), late)], overlap.LATEST)
    assert got.problems == [("c_frame_0", "annotation 12: updated_at 'yesterday' is not a time")]


# --- params.yaml ------------------------------------------------------------------------------------


def write_params(folder: Path, review: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"review": review}))
    return path


def test_the_rule_is_a_review_key_the_other_review_configs_ignore(tmp_path):
    ws = Workspace(tmp_path, write_params(tmp_path, {"max_items": 5, "seed": 3, "multiple_annotations": "agree"}))
    assert overlap.import_config(ws).multiple_annotations == "agree"
    assert queue_config(ws).max_items == 5 and expert_config(ws).seed == 3
    ws = Workspace(tmp_path, write_params(tmp_path, {"multiple_annotations": "vote"}))
    with pytest.raises(ConfigError) as exc:
        overlap.import_config(ws)
    assert exc.value.lines == [
        f"{tmp_path / 'params.yaml'} review.multiple_annotations: must be one of latest, refuse, agree, not 'vote'"
    ]
    assert overlap.import_config(Workspace(tmp_path / "nowhere")).multiple_annotations == "latest"  # no params.yaml
    with pytest.raises(ConfigError, match="unknown key"):  # a typo is still refused
        overlap.import_config(Workspace(tmp_path, write_params(tmp_path, {"multiple_annotation": "agree"})))


# --- through the queue store: `visem-pl review import` and `review status` ---------------------------


@pytest.fixture
def exported(queue_synth, queue_round, tmp_path):
    """Round 0's queue exported for Label Studio; the experts' answers: Alice's are the expected edits."""
    store = new_store(queue_round, tmp_path / "review" / "round-0")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    out = export_queue(store, LABELSTUDIO, boxes, locate(queue_synth).clips(), 0, when="2024-05-01T10:00:00Z")
    tasks = json.loads((Path(out["dir"]) / "tasks.json").read_text())
    return store, tasks, expected_answers(boxes)


def moved(boxes: list[list], dx: float = 0.002) -> list[list]:
    return [[b[0], b[1] + dx, *b[2:]] for b in boxes]


def overlap_export(tasks: list[dict], annotations: dict[str, list[dict]]) -> list[dict]:
    return [{"id": k, "data": t["data"], "annotations": annotations[t["data"]["item"]]} for k, t in enumerate(tasks, 1)]


def test_import_under_each_rule(run_cli, exported, tmp_path):
    store, tasks, alice = exported
    a0, a2, b1 = f"{A}_frame_0", f"{A}_frame_2", f"{B}_frame_1"
    # A frame 0: Bob agrees (his boxes 1 px right of Alice's); A frame 2: Bob left out Alice's first box;
    # B frame 1: Alice cleared it, Carol skipped it.
    export = overlap_export(
        tasks,
        {
            a0: [note(1, ALICE, alice[a0], T0), note(2, BOB, moved(alice[a0]), T1)],
            a2: [note(3, ALICE, alice[a2], T0), note(4, BOB, alice[a2][1:], T1)],
            b1: [note(5, ALICE, [], T0), note(6, CAROL, [[0, 0.5, 0.5, 0.1, 0.1]], T1, was_cancelled=True)],
        },
    )
    path = tmp_path / "project-3-at-2024-05-03.json"
    path.write_text(json.dumps(export))
    task_of = {t["data"]["item"]: t["id"] for t in export}
    k0, k2 = ([t["data"]["item"] for t in export].index(i) for i in (a0, a2))  # where to edit them below

    def import_(params: Path, *extra) -> tuple[int, str, str]:
        args = ["review", "import", path, "--round", "0", "--reviewer", "dr-a", "--store", store.root]
        return run_cli(*args, "--params", params, *extra)

    # refuse: both frames named with their count, nothing written.
    before = tree_digest(store.root)
    rc, _, err = import_(write_params(tmp_path, {"multiple_annotations": "refuse"}))
    assert rc == 2 and "refused, nothing imported (2 problem(s))" in err, err
    for item in (a0, a2):
        assert f"{item}: 2 annotations on one task (task {task_of[item]}, by alice@lab.test, bob@lab.test)" in err
    assert tree_digest(store.root) == before
    # An unknown rule: the file and key named, nothing written.
    rc, _, err = import_(write_params(tmp_path, {"multiple_annotations": "majority"}))
    assert rc == 2 and f"{tmp_path / 'params.yaml'} review.multiple_annotations: must be one of" in err, err
    assert tree_digest(store.root) == before

    # agree: A frame 0 taken as the mean of the two, A frame 2 back in the queue with the reason, B frame 1
    # Alice's (Carol skipped).
    rc, out, err = import_(write_params(tmp_path, {"multiple_annotations": "agree"}))
    assert rc == 0, err
    result = json.loads(out.splitlines()[-1])
    assert (result["imported"], result["changed"], result["requeued"]) == (2, 2, 1)
    state = store.state()["items"]
    assert same_rows(parse_labels((store.labels / f"{a0}.txt").read_text()), moved(alice[a0], 0.001))
    assert (store.labels / f"{b1}.txt").read_text() == ""
    assert not (store.labels / f"{a2}.txt").exists()
    assert {i: (e["state"], e["reviewer"], e["rule"]) for i, e in state.items()} == {
        a0: (REVIEWED, "alice@lab.test, bob@lab.test", "agree"),
        a2: (EXPORTED, None, "agree"),
        b1: (REVIEWED, "alice@lab.test", "single"),
    }
    assert state[a2]["annotators"] == ["alice@lab.test", "bob@lab.test"]
    assert state[a2]["requeued"]["reason"].startswith("annotators alice@lab.test, bob@lab.test disagree on 1 box(es)")
    assert store.to_export() == [a2]  # the next export or push hands it out again
    # The same file read the same way again: nothing to do.
    before = tree_digest(store.root)
    rc, out, err = import_(write_params(tmp_path, {"multiple_annotations": "agree"}))
    assert rc == 0 and "already imported" in out and tree_digest(store.root) == before, err
    rc, out, err = run_cli("review", "status", "--round", "0", "--store", store.root, "--json")
    assert rc == 0, err
    status = json.loads(out)
    n2 = len(alice[a2])
    assert status["per_reviewer"] == {
        "alice@lab.test": {"answered": 3, "taken": 2},
        "bob@lab.test": {"answered": 2, "taken": 1},
    }
    f1_a2 = 2 * (n2 - 1) / (n2 + n2 - 1)
    assert status["agreement"] == {
        "items": 2,
        "mean_f1": pytest.approx((1.0 + f1_a2) / 2, abs=1e-4),
        "pairs": [
            {
                "annotators": ["alice@lab.test", "bob@lab.test"],
                "items": 2,
                "mean_f1": pytest.approx((1 + f1_a2) / 2, abs=1e-4),
            }
        ],
    }
    assert list(status["requeued"]) == [a2] and status["left"] == 1
    rc, out, err = run_cli("review", "status", "--round", "0", "--store", store.root)
    assert rc == 0 and "agreement: 2 item(s) answered by several reviewers, mean F1" in out, err
    assert "alice@lab.test vs bob@lab.test: 2 item(s)" in out and f"back in the queue: {a2}: annotators" in out

    # Bob fixes A frame 2 in Label Studio (a newer export): now agreed, reviewed, no longer requeued.
    export[k2]["annotations"][1] = note(4, BOB, alice[a2], T1, T2)
    path.write_text(json.dumps(export))
    rc, out, err = import_(write_params(tmp_path, {"multiple_annotations": "agree"}))
    assert rc == 0, err
    entry = store.state()["items"][a2]
    assert (entry["state"], entry["reviewer"], "requeued" in entry) == (REVIEWED, "alice@lab.test, bob@lab.test", False)
    assert same_rows(parse_labels((store.labels / f"{a2}.txt").read_text()), alice[a2])

    # Bob changes his mind on A frame 0 (drops a box): under agree it would go back to the queue, but it is
    # reviewed, so that needs --replace; then it is in the queue again, its label gone.
    export[k0]["annotations"][1] = note(2, BOB, moved(alice[a0])[1:], T1, T2)
    path.write_text(json.dumps(export))
    before = tree_digest(store.root)
    rc, _, err = import_(write_params(tmp_path, {"multiple_annotations": "agree"}))
    assert rc == 2 and f"{a0}: already reviewed by alice@lab.test, bob@lab.test, but now annotators" in err, err
    assert "(use --replace to put it back in the review queue)" in err and tree_digest(store.root) == before
    rc, _, err = import_(write_params(tmp_path, {"multiple_annotations": "agree"}), "--replace")
    assert rc == 0, err
    assert store.state()["items"][a0]["state"] == EXPORTED and not (store.labels / f"{a0}.txt").exists()
    # latest (the file edited once more): Bob's answer, the later one, taken.
    export[k0]["annotations"][1]["updated_at"] = "2024-05-02T12:00:00.000000Z"
    path.write_text(json.dumps(export))
    rc, _, err = import_(write_params(tmp_path, {"multiple_annotations": "latest"}))
    assert rc == 0, err
    entry = store.state()["items"][a0]
    assert (entry["state"], entry["reviewer"], entry["rule"]) == (REVIEWED, "bob@lab.test", "latest")
    assert same_rows(parse_labels((store.labels / f"{a0}.txt").read_text()), moved(alice[a0])[1:])


def test_a_store_written_before_annotators_were_recorded_still_reads(run_cli, exported, tmp_path):
    store, tasks, alice = exported
    path = tmp_path / "export.json"
    path.write_text(json.dumps(overlap_export(tasks, {i: [note(k, 1, alice[i], T0)] for k, i in enumerate(ITEMS)})))
    rc, _, err = run_cli("review", "import", path, "--round", "0", "--reviewer", "dr-a", "--store", store.root)
    assert rc == 0, err
    state = store.state()
    assert {e["reviewer"] for e in state["items"].values()} == {"dr-a"}  # ids only, one user: --reviewer
    for e in state["items"].values():  # as an older visem-pl wrote it
        for key in ("annotators", "taken_from", "rule", "agreement", "requeued"):
            e.pop(key, None)
    store.save(state)
    rc, out, err = run_cli("review", "status", "--round", "0", "--store", store.root, "--json")
    assert rc == 0, err
    status = json.loads(out)
    assert status["reviewers"] == ["dr-a"] and status["per_reviewer"] == {"dr-a": {"answered": 3, "taken": 3}}
    assert status["agreement"] == {"items": 0, "mean_f1": None, "pairs": []} and status["requeued"] == {}


def test_a_killed_import_that_requeues_a_frame_is_undone_or_complete(run_cli, exported, tmp_path):
    """An import that puts a reviewed frame back in the queue (agree, --replace) removes its label: killed at
    any point, the next command finds the store as before the import, or the import complete."""
    store, tasks, alice = exported
    a0 = f"{A}_frame_0"
    first = tmp_path / "first.json"
    first.write_text(
        json.dumps(overlap_export(tasks, {i: [note(k, ALICE, alice[i], T0)] for k, i in enumerate(ITEMS)}))
    )
    rc, _, err = run_cli("review", "import", first, "--round", "0", "--reviewer", "dr-a", "--store", store.root)
    assert rc == 0, err
    # Bob answers every frame too: the same on all but A frame 0, where he leaves out a box.
    both = {i: [note(k, ALICE, alice[i], T0), note(10 + k, BOB, alice[i], T1)] for k, i in enumerate(ITEMS)}
    both[a0][1] = note(10, BOB, alice[a0][1:], T1)
    second = tmp_path / "second.json"
    second.write_text(json.dumps(overlap_export(tasks, both)))
    params = write_params(tmp_path, {"multiple_annotations": "agree"})
    args = ["review", "import", second, "--round", "0", "--reviewer", "dr-a", "--store", store.root,
            "--params", params, "--replace"]  # fmt: skip
    pristine = tmp_path / "pristine"
    shutil.copytree(store.root, pristine)
    before = tree_digest(pristine)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    outcomes = []
    for k in range(20):
        shutil.rmtree(store.root)
        shutil.copytree(pristine, store.root)
        proc = subprocess.run([sys.executable, "-c", KILL_AFTER, str(k), *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        rc, _, err = run_cli("review", "status", "--round", "0", "--store", store.root, "--json")
        assert rc == 0, err
        if len(store.state()["imports"]) == 1:
            assert tree_digest(store.root) == before, k
            outcomes.append("before")
        else:
            assert "was interrupted after it was recorded; it is complete" in err, err
            outcomes.append("complete")
    else:
        raise AssertionError("the import never finished")
    entry = store.state()["items"][a0]
    assert (entry["state"], "disagree on 1 box(es)" in entry["requeued"]["reason"]) == (EXPORTED, True)
    assert not (store.labels / f"{a0}.txt").exists()
    # Killed before the journal, the archived copy, the label's removal or state.json (the commit point): as
    # before; after state.json, before the journal's removal: complete.
    assert outcomes == ["before"] * 4 + ["complete"], outcomes
