"""`infer` is resumable: a run killed with SIGKILL finishes on rerun without redoing finished
clips and gives exactly the outputs of an uninterrupted run; a changed model or parameter redoes them.

The model is an untrained YOLOv8n built from `models/yolov8n.yaml` with a fixed torch seed and
saved as weights (nothing is downloaded). With conf 0.0 it still returns boxes (up to max_det
per frame), so the compared tables are not empty.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.project import HOLD_SECOND_WRITE, left
from helpers.trees import tiny_twin

from visem_pl.tasks.workspace import offline

offline.quiet_ultralytics()  # before Ultralytics is imported: offline, settings under .cache/

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

from visem_pl.tasks.dataset.reader import locate  # noqa: E402
from visem_pl.tasks.inference.backends import openvino_version  # noqa: E402
from visem_pl.tasks.inference.clips import (  # noqa: E402
    BACKEND_KEYS,
    META_KEY,
    InferConfig,
    file_sha256,
    fingerprint,
    infer_clips,
    is_done,
)
from visem_pl.tasks.workspace.paths import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FRAMES = 10
INFER = {"stride": 1, "imgsz": 320, "conf": 0.0, "iou": 0.7, "batch": 2, "max_det": 30, "device": "cpu"}
# The killed-run test compares two working directories box for box: each would time its own trial,
# and two trials may pick different precisions, so that test names its configuration outright.
PINNED = {**INFER, "backend": "openvino", "precision": "f32"}
PRED = Workspace().round(0).predictions

# The killed child: `visem-pl infer --round 0` whose second clip stops between writing its hidden
# temporary file and renaming it into place, and waits there for the kill (fault injection in the
# child only: the product code runs unchanged). The test kills it once the marker file says so.
HELD_CHILD = (
    HOLD_SECOND_WRITE
    + """
import sys
from visem_pl.cli.main import app
sys.argv = ["visem-pl", "infer", "--round", "0"]
app()
"""
)


def untrained_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    YOLO(str(REPO / "models" / "yolov8n.yaml")).save(str(path))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("infer_resume")
    root = base / "twin"
    tiny_twin(
        root,
        seed=3,
        videos=(11, 52),
        frames_per_video=2,
        rest_clips_per_video=1,
        other_videos=2,
        frames_per_clip=FRAMES,
    )
    weights = untrained_weights(base / "w.pt", seed=0)
    assert YOLO(str(weights)).model is not None  # loads back as weights
    return root, weights, base


def project_dir(base: Path, name: str, root: Path, weights: Path) -> Path:
    """A working directory as `visem-pl infer --round 0` expects it: params.yaml and round 0's weights."""
    cwd = base / name
    (cwd / "models" / "round-0").mkdir(parents=True)
    shutil.copyfile(weights, cwd / "models" / "round-0" / "weights.pt")
    (cwd / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(root)}, "infer": PINNED}))
    return cwd


def cli(cwd: Path, *args: str, code: str | None = None, **extra_env: str) -> subprocess.Popen:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = dict(os.environ, PYTHONPATH=path, PYTHONIOENCODING="utf-8", **extra_env)
    return subprocess.Popen(
        [sys.executable, "-c", code] if code else [sys.executable, "-m", "visem_pl.cli.main", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(cwd: Path) -> dict:
    proc = cli(cwd, "infer", "--round", "0")
    try:
        out, err = proc.communicate(timeout=left(180))
    finally:
        if proc.poll() is None:  # timed out or interrupted: no child outlives the test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def results(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*.parquet"))}


def test_killed_run_resumes_to_the_same_outputs(setup):
    root, weights, base = setup
    clips = locate(root).clips()
    assert len(clips) == 4
    names = sorted(f"{c.name}.parquet" for c in clips)

    ref_dir = project_dir(base, "reference", root, weights)
    ref_stats = run_to_end(ref_dir)
    assert ref_stats["clips"] == 4 and ref_stats["skipped"] == 0 and ref_stats["predicted"] == 4
    ref = results(ref_dir / PRED)
    assert sorted(ref) == names
    assert ref_stats["boxes"] == sum(pq.read_metadata(p).num_rows for p in ref.values()) > 0

    # Kill -9 while the second clip's file is written but not yet in place (the child waits there).
    work = project_dir(base, "killed", root, weights)
    pred = work / PRED
    marker = base / "held.marker"
    proc = cli(work, code=HELD_CHILD, HELD_MARKER=str(marker))
    try:
        deadline = time.monotonic() + left(180)
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the child never reached its second clip"
            time.sleep(0.05)
        held_tmp = work / marker.read_text()  # relative to the child's working directory
        assert held_tmp.exists() and held_tmp.parent.resolve() == pred.resolve()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    finished = results(pred)
    assert len(finished) == 1 and 1 <= len(finished) < 4, "exactly the first clip is finished"
    # Every visible result file is complete; anything else is a hidden temporary file.
    sha = file_sha256(work / "models" / "round-0" / "weights.pt")
    cfg = InferConfig(**PINNED)
    by_name = {c.name: c for c in clips}
    label = f"openvino/{openvino_version()}/f32/b2/throughput"
    for name, path in finished.items():
        assert is_done(path, fingerprint(sha, cfg, by_name[path.stem], label))
        assert pq.read_table(path).equals(pq.read_table(ref[name]))
    others = [p.name for p in pred.iterdir() if p.name not in finished]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in others), others
    assert others == [held_tmp.name]  # the second clip's half-done file, hidden
    before = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in finished.items()}

    stats = run_to_end(work)
    assert stats["clips"] == 4
    assert stats["skipped"] == len(finished) >= 1
    assert stats["predicted"] == 4 - len(finished)
    after = results(pred)
    assert sorted(after) == names
    for name, (ino, mtime) in before.items():
        st = after[name].stat()
        assert (st.st_ino, st.st_mtime_ns) == (ino, mtime), f"{name} was rewritten"
    for name, path in after.items():
        got, want = pq.read_table(path), pq.read_table(ref[name])
        assert got.num_rows > 0
        assert got.equals(want)
        assert got.schema.metadata == want.schema.metadata
        meta = json.loads(got.schema.metadata[META_KEY])
        assert meta["frames_scored"] == FRAMES and meta["backend"] == label
        assert meta["params"] == {k: v for k, v in INFER.items() if k not in BACKEND_KEYS}
        assert sorted(set(got.column("frame").to_pylist())) == list(range(FRAMES))

    # A third run has nothing left to do.
    assert run_to_end(work) == {"clips": 4, "skipped": 4, "predicted": 0, "boxes": 0, "backend": label}


def test_changed_parameters_or_weights_redo_finished_clips(setup, tmp_path):
    root, weights, base = setup
    clips = locate(root).clips()[:2]
    small = {**INFER, "max_det": 5}
    cfg = InferConfig(**small)
    out = tmp_path / "pred"

    first = infer_clips(weights, clips, out, cfg, progress=False)
    assert first == {"clips": 2, "skipped": 0, "predicted": 2, "boxes": first["boxes"]}
    assert 0 < first["boxes"] <= 2 * FRAMES * 5
    tables = {p.name: pq.read_table(p) for p in out.glob("*.parquet")}

    assert infer_clips(weights, clips, out, cfg, progress=False) == {
        "clips": 2,
        "skipped": 2,
        "predicted": 0,
        "boxes": 0,
    }

    # Another stride: every clip is redone, with every 2nd frame.
    stride2 = InferConfig(**{**small, "stride": 2})
    again = infer_clips(weights, clips, out, stride2, progress=False)
    assert (again["skipped"], again["predicted"]) == (0, 2)
    for p in out.glob("*.parquet"):
        meta = json.loads(pq.read_schema(p).metadata[META_KEY])
        assert meta["params"]["stride"] == 2 and meta["frames_scored"] == FRAMES // 2
        assert sorted(set(pq.read_table(p).column("frame").to_pylist())) == list(range(0, FRAMES, 2))

    # Back to stride 1: redone again, and the same tables as the first time.
    back = infer_clips(weights, clips, out, cfg, progress=False)
    assert (back["skipped"], back["predicted"]) == (0, 2)
    for p in out.glob("*.parquet"):
        assert pq.read_table(p).equals(tables[p.name])

    # Other weights (another seed): redone, and the fingerprint names the new file.
    other = untrained_weights(tmp_path / "other.pt", seed=1)
    assert file_sha256(other) != file_sha256(weights)
    redo = infer_clips(other, clips, out, cfg, progress=False)
    assert (redo["skipped"], redo["predicted"]) == (0, 2)
    for p in out.glob("*.parquet"):
        assert json.loads(pq.read_schema(p).metadata[META_KEY])["model_sha256"] == file_sha256(other)

    # A truncated result file (as a non-atomic writer would leave) is redone, the other skipped.
    victim = out / f"{clips[0].name}.parquet"
    victim.write_bytes(victim.read_bytes()[:100])
    fixed = infer_clips(other, clips, out, cfg, progress=False)
    assert (fixed["skipped"], fixed["predicted"]) == (1, 1)
    assert pq.read_table(victim).num_rows == fixed["boxes"] > 0


def test_another_backend_or_precision_redoes_finished_clips(setup, tmp_path):
    """The chosen configuration's label is part of each clip's fingerprint: switching it redoes the clip."""
    from visem_pl.tasks.inference.backends import openvino_version

    root, weights, _ = setup
    clips = locate(root).clips()[:1]
    out, cache = tmp_path / "pred", tmp_path / "exports"

    def infer(**change) -> tuple[dict, str]:
        stats = infer_clips(weights, clips, out, InferConfig(**{**INFER, **change}), progress=False, cache_dir=cache)
        meta = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[META_KEY])
        return {k: stats[k] for k in ("skipped", "predicted")}, meta["backend"]

    assert infer(backend="torch") == ({"skipped": 0, "predicted": 1}, "torch/cpu/fp32/b2")
    assert infer(backend="torch") == ({"skipped": 1, "predicted": 0}, "torch/cpu/fp32/b2")
    f32 = f"openvino/{openvino_version()}/f32/b2/throughput"
    assert infer(backend="openvino", precision="f32") == ({"skipped": 0, "predicted": 1}, f32)
    assert infer(backend="openvino", precision="f32") == ({"skipped": 1, "predicted": 0}, f32)
    assert infer(backend="openvino", precision="f32", batch=4) == (
        {"skipped": 0, "predicted": 1},
        f32.replace("b2", "b4"),
    )
    # auto: the trial's winner, recorded with the numbers it saw; a redo unless it is the last label.
    stats, auto_label = infer(backend="auto", precision="auto")
    (trial,) = (cache / "trials").glob("*.json")
    record = json.loads(trial.read_text())
    assert auto_label == record["label"] == record["trials"][0]["label"]
    assert stats == {"skipped": 0, "predicted": 1}  # the last label had batch 4; params ask for 2
    assert infer(backend="auto", precision="auto") == ({"skipped": 1, "predicted": 0}, auto_label)


def test_the_motility_window_runs_only_each_clips_first_seconds(setup, tmp_path):
    """`window_s` (motility's window): only the frames of each clip's first seconds, at the container's
    frame rate, recorded in the fingerprint; a window of 0 is the whole clip, recorded as before the window
    existed (whole-clip results stay current); a window longer than the clip is the whole clip."""
    from visem_pl.tasks.dataset.reader import probe_video
    from visem_pl.tasks.inference.clips import iter_frames

    root, weights, _ = setup
    clip = locate(root).clips()[0]
    fps = probe_video(clip.path).fps
    cfg = InferConfig(**INFER)
    assert "window_s" not in fingerprint("sha", cfg, clip, "label")["params"]
    window = InferConfig(**{**INFER, "window_s": 4 / fps})  # four frames
    out = tmp_path / "window"
    assert infer_clips(weights, [clip], out, window, progress=False)["predicted"] == 1
    meta = json.loads(pq.read_schema(out / f"{clip.name}.parquet").metadata[META_KEY])
    assert meta["frames_scored"] == 4 and meta["params"]["window_s"] == 4 / fps
    assert set(pq.read_table(out / f"{clip.name}.parquet").column("frame").to_pylist()) <= {0, 1, 2, 3}
    assert [i for i, _ in iter_frames(clip.path, 2, window_s=4 / fps)] == [0, 2]
    assert [i for i, _ in iter_frames(clip.path, 1, window_s=100.0)] == list(range(FRAMES))
    # The whole clip after the window: done again, all of it.
    whole = infer_clips(weights, [clip], out, cfg, progress=False)
    assert whole["predicted"] == 1
    assert json.loads(pq.read_schema(out / f"{clip.name}.parquet").metadata[META_KEY])["frames_scored"] == FRAMES


def test_the_motility_window_is_not_an_infer_setting(tmp_path):
    """`window_s` belongs to InferConfig only for the motility window's run; under params.yaml `infer`
    it would cut every clip's predictions to their first seconds, so it is refused, naming the file."""
    from visem_pl.tasks.inference.stages import infer_config
    from visem_pl.tasks.workspace.errors import ConfigError
    from visem_pl.tasks.workspace.paths import Workspace

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"infer": {"stride": 3}, "motility": {"window_s": 5.0}}))
    assert infer_config(Workspace(tmp_path, params)).window_s == 0.0
    params.write_text(yaml.safe_dump({"infer": {"stride": 3, "window_s": 5.0}}))
    with pytest.raises(ConfigError, match="infer.window_s: not a setting of infer") as err:
        infer_config(Workspace(tmp_path, params))
    assert str(params) in str(err.value)
