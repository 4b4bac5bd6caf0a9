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
from helpers.label_studio import REPO, label_studio_bin
from helpers.project import free_port
from helpers.review import ITEMS, A, B, check_merged, edit, expected_answers, region
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
    assert {i: (e["state"], e["reviewer"]) for i, e in store.state()["items"].items()} == {
        i: (REVIEWED, "dr-a") for i in ITEMS
    }
    # Nothing new in the project: pulling again is a no-op.
    before = tree_digest(store.root)
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-a")
    assert rc == 0 and "already imported" in out and json.loads(out.splitlines()[-1])["unchanged"] is True
    assert tree_digest(store.root) == before

    # A second reviewer clears B frame 1 in Label Studio: refused without --replace, then replaced.
    expert.annotations.update(id=annotation_ids[f"{B}_frame_1"], result=[])
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-b")
    assert rc == 2
    assert f"{B}_frame_1: already reviewed by dr-a with another answer (use --replace to overwrite)" in err
    assert sum("already reviewed" in ln for ln in err.splitlines()) == 1
    assert tree_digest(store.root) == before
    rc, out, err = cli("review", "pull", "--round", "0", "--reviewer", "dr-b", "--replace")
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["changed"] == 1
    state = store.state()["items"]
    assert (state[f"{B}_frame_1"]["reviewer"], (store.labels / f"{B}_frame_1.txt").read_text()) == ("dr-b", "")
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
