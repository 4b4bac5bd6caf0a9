"""One bad clip never stops a round (`data.on_bad_clip: skip`): a clip that cannot be opened and one
that opens but stops decoding partway are left out, recorded with the reason by validate, infer,
track and report, while every other clip gets exactly the predictions it gets without them;
`on_bad_clip: fail` keeps the strict behaviour, and labelled data stays strict either way.

The two damages are those of an interrupted download: an MP4 whose index (moov) is written last, cut
in half, cannot be opened; one remuxed with the index first (`movflags faststart`, as web players
and many acquisition tools write them), cut in half, opens and reports all its frames but decodes
only the first half.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import pyarrow.parquet as pq
import pytest
import yaml
from helpers.trees import tiny_twin
from test_infer_resume import FRAMES, PINNED, PRED, cli, untrained_weights

from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.inference.clips import ClipError, InferConfig, infer_clips, iter_frames
from visem_pl.tasks.workspace.paths import Workspace


def cut_in_half(path: Path) -> None:
    """Keep the first half of the file's bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def faststart_cut(path: Path) -> None:
    """Remux the clip with its index first, then cut it in half: it opens, then decoding stops."""
    tmp = path.with_name("faststart.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut_in_half(tmp)
    tmp.replace(path)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A twin of 4 clips (copied pristine too) in which one clip cannot be opened and one is cut partway."""
    base = tmp_path_factory.mktemp("bad_clip")
    pristine = tiny_twin(base / "pristine", seed=5, videos=(11, 52), frames_per_video=2, rest_clips_per_video=1,
                         other_videos=2, frames_per_clip=FRAMES)  # fmt: skip
    root = base / "twin"
    shutil.copytree(pristine, root)
    clips = locate(root).clips()
    assert len(clips) == 4
    unopenable, cut = clips[0], clips[2]
    cut_in_half(unopenable.path)
    faststart_cut(cut.path)
    weights = untrained_weights(base / "w.pt", seed=0)
    return base, pristine, root, weights, unopenable.name, cut.name


def test_the_damaged_clips_fail_as_an_interrupted_download_does(damaged):
    _, _, root, _, unopenable, cut = damaged
    by_name = {c.name: c for c in locate(root).clips()}
    with pytest.raises(ClipError, match=rf"{unopenable}\.mp4:0: cannot be opened"):
        list(iter_frames(by_name[unopenable].path, 1))
    cap = cv2.VideoCapture(str(by_name[cut].path))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES  # it looks whole
    cap.release()
    with pytest.raises(ClipError, match=rf"{cut}\.mp4:0: decoding stopped at frame \d+ of the {FRAMES}"):
        list(iter_frames(by_name[cut].path, 1))


def test_infer_leaves_bad_clips_out_and_predicts_the_others_as_without_them(damaged, tmp_path):
    _, pristine, root, weights, unopenable, cut = damaged
    cfg = InferConfig(**PINNED)
    clips = locate(root).clips()
    good = [c for c in clips if c.name not in (unopenable, cut)]
    out = tmp_path / "pred"
    out.mkdir()
    # An earlier good recording's result under the cut clip's name must not survive as its result.
    infer_clips(weights, [c for c in locate(pristine).clips() if c.name == cut], out, cfg, progress=False)
    assert (out / f"{cut}.parquet").exists()

    stats = infer_clips(weights, clips, out, cfg, progress=False, on_bad_clip="skip")
    assert (stats["clips"], stats["predicted"]) == (4, 2)
    assert sorted(stats["bad_clips"]) == sorted([unopenable, cut])
    assert "cannot be opened" in stats["bad_clips"][unopenable]
    assert "decoding stopped" in stats["bad_clips"][cut]
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted(c.name for c in good)

    alone = tmp_path / "alone"
    infer_clips(weights, good, alone, cfg, progress=False)
    for c in good:  # the failed sources in between change nothing of the others' boxes
        got, want = pq.read_table(out / f"{c.name}.parquet"), pq.read_table(alone / f"{c.name}.parquet")
        assert got.num_rows > 0 and got.equals(want)

    with pytest.raises(ClipError, match=unopenable):
        infer_clips(weights, clips, tmp_path / "strict", cfg, progress=False, on_bad_clip="fail")


def project(base: Path, name: str, root: Path, weights: Path, **data) -> Path:
    cwd = base / name
    (cwd / "models" / "round-0").mkdir(parents=True)
    shutil.copyfile(weights, cwd / "models" / "round-0" / "weights.pt")
    params = {"data": {"root": str(root), **data}, "infer": PINNED, "track": {"method": "trackpy"}}
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    return cwd


def run(cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = cli(cwd, *args)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_a_round_goes_on_without_its_bad_clips_and_says_so_at_every_step(damaged, run_cli):
    base, _, root, weights, unopenable, cut = damaged
    cwd = project(base, "skip", root, weights)

    # validate: each is that clip's problem, not the dataset's (the cut one: its last frame does not decode).
    # The project's params.yaml does not name data.on_bad_clip: skip is the default (dvc.yaml's validate).
    rc, out, err = run(cwd, "validate", str(root), "--params", "params.yaml", "--metrics", str(base / "dataset.json"))
    assert rc == 0, err
    assert f"{unopenable}.mp4:0: cannot be opened" in err and "left out of every round (on_bad_clip: skip)" in err
    assert f"{cut}.mp4:0: frame {FRAMES - 1} of {FRAMES} cannot be decoded" in err
    summary = json.loads((base / "dataset.json").read_text())
    assert sorted(summary["bad_clips"]) == sorted([unopenable, cut]) and summary["clips"]
    rc, out, err = run_cli("validate", root, "--on-bad-clip", "fail")
    assert rc == 2 and f"{unopenable}.mp4:0: " in err and f"{cut}.mp4:0: " in err
    rc, out, err = run_cli("validate", root, "--on-bad-clip", "maybe")
    assert rc == 2 and "--on-bad-clip: must be one of skip, fail" in err

    # infer: both are left out, recorded with their reasons; the others are pseudo-labelled.
    rc, out, err = run(cwd, "infer", "--round", "0")
    assert rc == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["predicted"] == 2 and sorted(stats["bad_clips"]) == sorted([unopenable, cut])
    assert f"{cut}.mp4:0: decoding stopped" in err  # the warning, as it happens
    record = json.loads((cwd / "metrics/rounds/round-0/infer.json").read_text())
    assert record["bad_clips"] == stats["bad_clips"]
    assert len(list((cwd / PRED).glob("*.parquet"))) == 2

    # track: links the clips that were pseudo-labelled, and says which were left out.
    rc, out, err = run(cwd, "track", "--round", "0")
    assert rc == 0, err
    tracked = json.loads(out.strip().splitlines()[-1])
    assert tracked["clips"] == 2 and sorted(tracked["bad_clips"]) == sorted([unopenable, cut])
    assert len(list(Workspace(cwd).round(0).tracks.glob("*.parquet"))) == 2

    # report: the round's clips left out, each with its reason.
    rc, out, err = run(cwd, "report")
    assert rc == 0, err
    assert "round 0: 2 clip(s) left out (data.on_bad_clip: skip)" in out
    assert f"{cut}: " in out and f"{unopenable}: " in out
    rc, out, err = run(cwd, "report", "--json")
    assert sorted(json.loads(out)["rounds"]["0"]["bad_clips"]) == sorted([unopenable, cut])


def test_on_bad_clip_fail_stops_at_the_clip_and_labelled_data_stays_strict(damaged, small_tree, run_cli):
    base, _, root, weights, unopenable, _ = damaged
    cwd = project(base, "fail", root, weights, on_bad_clip="fail")
    rc, out, err = run(cwd, "infer", "--round", "0")
    assert rc == 2 and f"{unopenable}.mp4:0: cannot be opened" in err and "Traceback" not in err
    assert "data.on_bad_clip is fail" in err
    rc, out, err = run(cwd, "validate", str(root), "--params", "params.yaml")  # as dvc.yaml runs it
    assert rc == 2 and f"{unopenable}.mp4:0: cannot be opened" in err
    rc, out, err = run(cwd, "validate", str(root), "--params", "params.yaml", "--on-bad-clip", "skip")
    assert rc == 0 and "left out of every round" in err  # the option wins over params.yaml

    bad = project(base, "typo", root, weights, on_bad_clip="ignore")
    for step in (("infer", "--round", "0"), ("validate", str(root), "--params", "params.yaml")):
        rc, out, err = run(bad, *step)
        assert rc == 2 and "data.on_bad_clip: must be one of skip, fail, not 'ignore'" in err, step

    # A broken label file is an error whatever on_bad_clip says.
    label = small_tree.label(11, 0)
    label.write_text("0 0.5 0.5 0.1\n")
    rc, out, err = run_cli("validate", small_tree.root, "--on-bad-clip", "skip")
    assert rc == 2 and f"{label}:1:" in err
