"""Live Label Studio: `review push` into a real server started on loopback, an expert's edits
written through its API (moved, deleted, added and relabelled boxes), `review pull` through the
checked all-or-nothing import, and the merge ending with exactly those edits.

The server is `label-studio` from its own virtual environment (`.ls-venv/`, built by
`make ls-venv`; CI's .ci/run builds it), started once per session on a free 127.0.0.1 port with a
temporary data dir, local-files serving rooted at a temporary folder, a legacy API token set for
its initial user, and its telemetry, Sentry and version check switched off. It inherits the
suite's PYTHONPATH, so netguard refuses (and the session reports) any connection it tries beyond
loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from helpers.label_studio import INITIAL_USER as EXPERT
from helpers.label_studio import REPO, add_user, label_studio_bin
from helpers.project import free_port
from helpers.review import ITEMS, A, B, check_merged, edit, expected_answers, parse_labels, region
from helpers.trees import tree_digest

from visem_pl.tasks.review.exchange import labelstudio
from visem_pl.tasks.review.exchange.live import PROJECT_FILE
from visem_pl.tasks.review.queue import REVIEWED
from visem_pl.tasks.review.store import QueueStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk")  # its pydantic-v1 style


def test_missing_ls_venv_fails_naming_the_make_target(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="make ls-venv"):
        label_studio_bin(tmp_path / "no-venv")


# --- helpers ----------------------------------------------------------------------------------------


class Cli:
    """`python -m visem_pl.cli.main ...` in the project folder (the round's files at their default paths),
    with the Label Studio environment; keeps every output for the token check."""

    def __init__(self, cwd: Path, env: dict):
        self.cwd, self.env, self.outputs = cwd, env, []

    def __call__(self, *args, env: dict | None = None) -> tuple[int, str, str]:
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        full = {**os.environ, "PYTHONPATH": path, "PYTHONIOENCODING": "utf-8", **self.env, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "visem_pl.cli.main", *map(str, args)],
            cwd=self.cwd,
            env=full,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=300,
        )
        self.outputs += [proc.stdout, proc.stderr]
        return proc.returncode, proc.stdout, proc.stderr


def rows_of(result: list[dict]) -> list[list]:
    """Label Studio regions -> [cls, cx, cy, w, h] rows (in their order)."""
    out = []
    for r in result:
        box = labelstudio.region_to_box(r)
        assert not isinstance(box, str), box
        out.append([int(box[0]), *map(float, box[1:])])
    return out


def files_under(*roots: Path):
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path


# --- the round trip -------------------------------------------------------------------------------


def test_push_edit_pull_merge(ls_server, queue_synth, queue_round, tmp_path, monkeypatch):
    from label_studio_sdk import LabelStudio

    ls = ls_server
    print(f"label-studio answered {ls.url}/health {ls.started_in_s:.1f} s after its start")
    proj = ls.root / "project"  # the repository checkout, under the server's document root
    (proj / "data" / "rounds" / "round-0").mkdir(parents=True)
    shutil.copytree(queue_round / "pseudo", proj / "data" / "rounds" / "round-0" / "pseudo")
    (proj / "params.yaml").write_text(json.dumps({"data": {"root": str(queue_synth)}}))
    cli = Cli(
        proj,
        {
            "LABEL_STUDIO_URL": ls.url,
            "LABEL_STUDIO_API_KEY": ls.token,
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(ls.root),
        },
    )
    store = QueueStore(proj / "review" / "round-0")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    expert = LabelStudio(base_url=ls.url, api_key=ls.token)

    # A wrong key: refused before anything is exported, and the key is not echoed.
    wrong = "wrong-" + secrets.token_hex(16)
    rc, out, err = cli("review", "push", "--round", "0", env={"LABEL_STUDIO_API_KEY": wrong})
    assert rc == 2 and "HTTP 401" in err, err
    assert wrong not in out + err
    assert store.state()["exports"] == [] and not store.exports.exists()
    rc, out, err = cli("review", "push", "--round", "0", env={"LABEL_STUDIO_URL": ""})
    assert rc == 2 and "set LABEL_STUDIO_URL in the environment" in err
    rc, out, err = cli("review", "push", "--round", "0", env={"LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}"})
    assert rc == 2 and "ConnectError" in err, err
    assert store.state()["exports"] == [] and not store.exports.exists()

    # A queue folder the server cannot see (outside its document root): Label Studio refuses the
    # storage, the half-made project is deleted and nothing is recorded.
    outside = tmp_path / "elsewhere"
    projects = [p.id for p in expert.projects.list()]  # the server is shared by the session's tests
    rc, out, err = cli("review", "push", "--round", "0", "--store", outside / "q", "--document-root", outside)
    assert rc == 2 and "push failed, nothing recorded" in err and "must be a subdirectory of" in err, err
    assert [p.id for p in expert.projects.list()] == projects
    assert QueueStore(outside / "q").state()["exports"] == [] and list((outside / "q" / "exports").iterdir()) == []

    # Push: one project holding the three frames with the model's boxes as predictions.
    rc, out, err = cli("review", "push", "--round", "0", "--title", "visem-pl test round 0")
    assert rc == 0, err
    pushed = json.loads(out.splitlines()[-1])
    assert pushed["items"] == 3 and pushed["url"] == ls.url
    batch, pid = pushed["batch"], pushed["project"]
    assert {i: e["state"] for i, e in store.state()["items"].items()} == {i: "exported" for i in ITEMS}
    assert store.state()["exports"][-1]["batch"] == batch
    info = json.loads((store.exports / batch / PROJECT_FILE).read_text())
    assert (info["project"], info["batch"], info["items"]) == (pid, batch, list(store.queue()["item"]))
    project = expert.projects.get(id=pid)
    assert project.title == "visem-pl test round 0"
    assert project.label_config.strip() == labelstudio.labelling_config().strip()
    tasks = {t.data["item"]: t for t in expert.tasks.list(project=pid, fields="all")}
    assert sorted(tasks) == sorted(ITEMS)
    for item, task in tasks.items():
        # The frame image is served by Label Studio from the local-files storage.
        assert task.data["image"] == f"/data/local-files/?d=project/review/round-0/exports/{batch}/images/{item}.jpg"
        req = urllib.request.Request(ls.url + task.data["image"], headers={"Authorization": f"Token {ls.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
            assert r.read() == (store.exports / batch / "images" / f"{item}.jpg").read_bytes()
        (pred,) = expert.predictions.list(task=task.id)
        assert pred.model_version == "round-0"
        got, want = (
            rows_of(pred.result),
            [
                [int(r.cls), r.cx, r.cy, r.w, r.h]
                for r in boxes[
                    (boxes["clip"] + "_frame_" + boxes["frame"].astype(str) == item) & (boxes["band"] != "reject")
                ]
                .sort_values("conf", ascending=False, kind="stable")
                .itertuples()
            ],
        )
        assert [g[0] for g in got] == [w[0] for w in want]
        for g, w in zip(got, want):
            assert g[1:] == pytest.approx(w[1:], abs=1e-6)

    # Pulling before the expert is done: refused, every missing frame named, nothing changed.
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-a")
    assert rc == 2 and "refused, nothing imported" in err
    for item in ITEMS:
        assert f"{item}: missing from the file (no answer)" in err
    assert tree_digest(store.root) == before

    # The expert, in Label Studio: A frame 0 edited from the predictions shown (move the first box,
    # delete the second, relabel the third, add a pinhead), A frame 2 accepted as predicted, and
    # B frame 1 first kept as predicted (a mistake, corrected below).
    def preds(item):
        return expert.predictions.list(task=tasks[item].id)[0].result

    answers = {
        f"{A}_frame_0": [region(*r, f"e{j}") for j, r in enumerate(edit(rows_of(preds(f"{A}_frame_0"))))],
        f"{A}_frame_2": preds(f"{A}_frame_2"),
        f"{B}_frame_1": preds(f"{B}_frame_1"),
    }
    annotation_ids = {
        item: expert.annotations.create(
            id=tasks[item].id, result=result, lead_time=12.5, was_cancelled=False, ground_truth=False
        ).id
        for item, result in answers.items()
    }
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-a")
    assert rc == 0, err
    first = json.loads(out.splitlines()[-1])
    assert (first["imported"], first["changed"], first["project"], first["batch"]) == (3, 3, pid, batch)
    archived = store.root / first["file"]
    assert archived.parent == store.imports and archived.name.endswith(f"_dr-a_labelstudio-project-{pid}-{batch}.json")
    assert {t["data"]["item"] for t in json.loads(archived.read_text())} == set(ITEMS)
    # Each item is recorded as answered by the Label Studio user who annotated it; --reviewer is who pulled.
    assert {i: (e["state"], e["reviewer"]) for i, e in store.state()["items"].items()} == {
        i: (REVIEWED, EXPERT) for i in ITEMS
    }
    assert store.state()["imports"][-1]["reviewer"] == "dr-a"
    # Nothing new in the project: pulling again is a no-op.
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-a")
    assert rc == 0 and "already imported" in out and json.loads(out.splitlines()[-1])["unchanged"] is True
    assert tree_digest(store.root) == before

    # The expert clears B frame 1 in Label Studio, dr-b pulls: refused without --replace, then replaced.
    expert.annotations.update(id=annotation_ids[f"{B}_frame_1"], result=[])
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-b")
    assert rc == 2
    assert f"{B}_frame_1: already reviewed by {EXPERT} with another answer (use --replace to overwrite)" in err
    assert sum("already reviewed" in ln for ln in err.splitlines()) == 1
    assert tree_digest(store.root) == before
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-b", "--replace")
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["changed"] == 1
    state = store.state()["items"]
    assert (state[f"{B}_frame_1"]["reviewer"], (store.labels / f"{B}_frame_1.txt").read_text()) == (EXPERT, "")
    assert store.state()["imports"][-1]["reviewer"] == "dr-b"
    assert len(list(store.imports.iterdir())) == 2
    rc, out, err = cli("review", "push", "--round", "0")
    assert rc == 0 and "nothing to push" in out

    # A personal access token (1.23's default kind; the SDK trades it for short-lived access tokens)
    # works the same: nothing new in the project, so the pull is a no-op.
    req = urllib.request.Request(
        f"{ls.url}/api/token/",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Token {ls.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        pat = json.loads(r.read())["token"]
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-b", env={"LABEL_STUDIO_API_KEY": pat})
    assert rc == 0 and json.loads(out.splitlines()[-1])["unchanged"] is True, err
    assert tree_digest(store.root) == before

    # The merge holds exactly the expert's edits.
    check_merged(queue_synth, queue_round, store, tmp_path, monkeypatch)

    # The token appears in no output and no written file (the project folder, the queue folder, the merge).
    for secret in (ls.token, pat):
        assert not [text for text in cli.outputs if secret in text]
        assert [p for p in files_under(proj, tmp_path) if secret.encode() in p.read_bytes()] == []
    assert answers[f"{A}_frame_0"] != answers[f"{A}_frame_2"] and set(expected_answers(boxes)) == set(ITEMS)


# --- two experts on the same frames (Label Studio overlap) ----------------------------------------


def test_two_experts_answer_the_same_frames(ls_server, queue_synth, queue_round, tmp_path):
    """A second Label Studio user with a key of their own; both annotate the three pushed frames through the
    API (the same boxes on B frame 1 and, 1 px apart, on A frame 0; on A frame 2 the second leaves out a
    box). `review pull` under each params.yaml review.multiple_annotations rule: refuse refuses naming every
    frame and writes nothing; agree takes the agreed frames and leaves A frame 2 queued with the reason; a
    ground-truth mark wins; latest takes the later annotation. Every item records both experts' e-mails and
    `review status` their counts and agreement."""
    from label_studio_sdk import LabelStudio

    ls = ls_server
    second_email = "second@visem-pl.test"
    second_token = add_user(ls, second_email)
    proj = ls.root / "overlap-project"
    (proj / "data" / "rounds" / "round-0").mkdir(parents=True)
    shutil.copytree(queue_round / "pseudo", proj / "data" / "rounds" / "round-0" / "pseudo")

    def rule(name: str) -> None:
        params = {"data": {"root": str(queue_synth)}, "review": {"multiple_annotations": name}}
        (proj / "params.yaml").write_text(json.dumps(params))

    env = {
        "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": ls.token,
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(ls.root),
    }
    cli = Cli(proj, env)
    store = QueueStore(proj / "review" / "round-0")
    first, second = LabelStudio(base_url=ls.url, api_key=ls.token), LabelStudio(base_url=ls.url, api_key=second_token)
    me, other = first.users.whoami(), second.users.whoami()
    assert (me.email, other.email) == (EXPERT, second_email) and me.id != other.id

    rule("latest")
    rc, out, err = cli("review", "push", "--round", "0", "--title", "visem-pl overlap round 0")
    assert rc == 0, err
    pid = json.loads(out.splitlines()[-1])["project"]
    tasks = {t.data["item"]: t for t in first.tasks.list(project=pid, fields="all")}
    a0, a2, b1 = f"{A}_frame_0", f"{A}_frame_2", f"{B}_frame_1"
    preds = {item: rows_of(first.predictions.list(task=t.id)[0].result) for item, t in tasks.items()}
    mine = {a0: edit(preds[a0]), a2: preds[a2], b1: []}
    theirs = {a0: [[r[0], r[1] + 0.002, *r[2:]] for r in mine[a0]], a2: preds[a2][1:], b1: []}
    ids = {}
    for who, client, answers in (("first", first, mine), ("second", second, theirs)):  # the second expert later
        for item, rows in answers.items():
            result = [region(*r, f"{who}{j}") for j, r in enumerate(rows)]
            made = client.annotations.create(id=tasks[item].id, result=result, lead_time=8.0, was_cancelled=False)
            ids[who, item] = made.id
    assert first.annotations.get(id=ids["second", a0]).completed_by == other.id  # the second expert's own key
    assert all(len(first.annotations.list(id=t.id)) == 2 for t in tasks.values())
    both = [EXPERT, second_email]

    def items() -> dict:
        return store.state()["items"]

    def labels(item: str) -> list[list]:
        return parse_labels((store.labels / f"{item}.txt").read_text())

    def same(got: list[list], want: list[list]) -> bool:
        return [g[0] for g in got] == [w[0] for w in want] and all(
            g[1:] == pytest.approx(w[1:], abs=1.5e-6) for g, w in zip(got, want)
        )

    # refuse: every frame named with its task and annotators, nothing written.
    rule("refuse")
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0")
    assert rc == 2 and "refused, nothing imported (3 problem(s))" in err, err
    for item in (a0, a2, b1):
        assert f"{item}: 2 annotations on one task (task {tasks[item].id}, by {EXPERT}, {second_email})" in err
    assert tree_digest(store.root) == before

    # agree: A frame 0 (the two 1 px apart: their mean) and B frame 1 (both empty) taken; A frame 2 stays
    # in the queue, the box they split on said.
    rule("agree")
    rc, out, err = cli("review", "pull", "--round", "0")
    assert rc == 0, err
    pulled = json.loads(out.splitlines()[-1])
    assert (pulled["imported"], pulled["changed"], pulled["requeued"]) == (2, 2, 1)
    assert same(labels(a0), [[r[0], r[1] + 0.001, *r[2:]] for r in mine[a0]]) and labels(b1) == []
    assert not (store.labels / f"{a2}.txt").exists()
    state = items()
    assert {i: (e["state"], e["taken_from"], e["annotators"], e["rule"]) for i, e in state.items()} == {
        a0: (REVIEWED, both, both, "agree"),
        a2: ("exported", [], both, "agree"),
        b1: (REVIEWED, both, both, "agree"),
    }
    assert state[a2]["requeued"]["reason"].startswith(f"annotators {EXPERT}, {second_email} disagree on 1 box(es)")
    (imported,) = store.state()["imports"]
    assert (imported["reviewer"], imported["rule"]) == (EXPERT, "agree")  # no --reviewer: the key's user pulled
    assert store.to_export() == [a2]

    rc, out, err = cli("review", "status", "--round", "0", "--json")
    assert rc == 0, err
    status = json.loads(out)
    assert status["per_reviewer"] == {EXPERT: {"answered": 3, "taken": 2}, second_email: {"answered": 3, "taken": 2}}
    n = len(mine[a2])
    f1_a2 = 2 * (n - 1) / (2 * n - 1)
    assert status["agreement"]["items"] == 3
    assert status["agreement"]["mean_f1"] == pytest.approx((2 + f1_a2) / 3, abs=1e-4)
    assert status["agreement"]["pairs"] == [
        {"annotators": sorted(both), "items": 3, "mean_f1": pytest.approx((2 + f1_a2) / 3, abs=1e-4)}
    ]
    assert list(status["requeued"]) == [a2] and status["left"] == 1
    rc, out, err = cli("review", "status", "--round", "0")
    mean = status["agreement"]["mean_f1"]
    assert rc == 0 and f"agreement: 3 item(s) answered by several reviewers, mean F1 {mean:.3f}" in out, err
    assert f"{EXPERT} vs {second_email}: 3 item(s)" in out and f"back in the queue: {a2}: annotators" in out

    # The first expert marks their answer to A frame 2 as ground truth: it wins over the rule.
    first.annotations.update(id=ids["first", a2], ground_truth=True)
    rc, out, err = cli("review", "pull", "--round", "0")
    assert rc == 0, err
    entry = items()[a2]
    assert (entry["state"], entry["reviewer"], entry["rule"], "requeued" in entry) == (
        REVIEWED,
        EXPERT,
        "ground_truth",
        False,
    )
    assert same(labels(a2), mine[a2])

    # latest (dr-lead pulls): the second expert answered last; A frame 0 is reviewed with the agreed boxes,
    # so taking theirs needs --replace. The ground truth still wins on A frame 2.
    rule("latest")
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-lead")
    assert rc == 2 and f"{a0}: already reviewed by {EXPERT}, {second_email} with another answer" in err, err
    assert tree_digest(store.root) == before
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-lead", "--replace")
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["changed"] == 1
    state = items()
    assert {i: (e["reviewer"], e["rule"]) for i, e in state.items()} == {
        a0: (second_email, "latest"),
        a2: (EXPERT, "ground_truth"),
        b1: (", ".join(both), "agree"),  # the same (empty) answer: it stays whose it was
    }
    assert same(labels(a0), theirs[a0]) and same(labels(a2), mine[a2])
    last = store.state()["imports"][-1]
    assert (last["reviewer"], last["rule"]) == ("dr-lead", "latest") and "_dr-lead_labelstudio-project-" in last["file"]

    # Neither expert's key appears in any output or written file.
    for secret in (ls.token, second_token):
        assert not [text for text in cli.outputs if secret in text]
        assert [p for p in files_under(proj) if secret.encode() in p.read_bytes()] == []
