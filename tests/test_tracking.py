"""Tracks: linking against the synthetic truth, gap filling, bad input, and `visem-pl track` (files,
resume, scores) on prediction files made from the truth boxes with jitter and dropped boxes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.predfiles import write_predictions
from helpers.project import run
from helpers.trees import tiny_twin

from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.truth import truth_for
from visem_pl.tasks.tracking.link import METHODS, TrackConfig, fill_gaps, link
from visem_pl.tasks.tracking.score import score

STRIDE = 3


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking") / "twin"
    tiny_twin(root, seed=3, videos=(11, 12), frames_per_video=1, frames_per_clip=90)
    truth = truth_for(root)
    return root, {c.name: truth.clip(c.name) for c in locate(root).clips()}


def truth_boxes(t: pd.DataFrame, stride: int = STRIDE) -> pd.DataFrame:
    return t[t["frame"] % stride == 0].rename(columns={"class": "cls"}).assign(conf=0.9)


def test_default_tracker_on_truth_boxes_reaches_the_goal(twin):
    """Issue goal: the tracker alone, fed the truth boxes at the default stride, IDF1 >= 0.90."""
    _, truths = twin
    pairs = [(t, link(truth_boxes(t), 640, 480, STRIDE, TrackConfig(min_length=1))) for t in truths.values()]
    s = score(pairs, STRIDE)
    assert s["idf1"] >= 0.90 and s["mota"] >= 0.90, s


@pytest.mark.parametrize("method", METHODS)
def test_every_method_links_truth_boxes(twin, method):
    _, truths = twin
    t = next(iter(truths.values()))
    tracks = link(truth_boxes(t), 640, 480, STRIDE, TrackConfig(method=method, min_length=1))
    assert set(tracks.columns) >= {"frame", "track", "cx", "cy", "w", "h", "conf", "source"}
    assert (tracks["source"] == "detected").all() and tracks["track"].min() == 0
    s = score([(t, tracks)], STRIDE)
    assert s["idf1"] >= 0.7, (method, s)  # every method is a working tracker on clean boxes


def test_a_shuffled_linking_scores_low(twin):
    """The score is not blind: the same boxes with track ids scrambled per frame score far lower."""
    _, truths = twin
    t = next(iter(truths.values()))
    tracks = link(truth_boxes(t), 640, 480, STRIDE, TrackConfig(min_length=1))
    rng = np.random.default_rng(0)
    scrambled = tracks.assign(track=rng.permutation(tracks["track"].to_numpy()))
    assert score([(t, scrambled)], STRIDE)["idf1"] < 0.5 * score([(t, tracks)], STRIDE)["idf1"]


def test_gaps_are_interpolated_up_to_max_gap():
    rows = [(f, 0, 0.1 + 0.01 * f / 3, 0.5, 0.04, 0.05, 0.9) for f in (0, 3, 12, 15, 30, 33)]
    tracks = pd.DataFrame(rows, columns=["frame", "cls", "cx", "cy", "w", "h", "conf"]).assign(
        track=0, source="detected"
    )
    filled = fill_gaps(tracks, stride=3, max_gap=2)
    added = filled[filled["source"] == "interpolated"]
    assert added["frame"].tolist() == [6, 9]  # 3 -> 12 misses two scored frames; 15 -> 30 misses four
    np.testing.assert_allclose(added["cx"], [0.1 + 0.01 * 2, 0.1 + 0.01 * 3])
    assert added["conf"].isna().all() and len(filled) == len(tracks) + 2


def test_bad_or_empty_input():
    cols = ["frame", "cls", "cx", "cy", "w", "h", "conf"]
    assert link(pd.DataFrame(columns=cols), 640, 480, 3, TrackConfig()).empty
    one = pd.DataFrame([(0, 0, 0.5, 0.5, 0.04, 0.05, 0.9)], columns=cols)
    assert link(one, 640, 480, 3, TrackConfig()).empty  # one frame: shorter than min_length
    nan = pd.DataFrame([(0, 0, 0.5, 0.5, 0.04, 0.05, 0.9), (3, 0, np.nan, 0.5, 0.04, 0.05, 0.9)], columns=cols)
    with pytest.raises(ValueError, match="NaN.*frame 3"):
        link(nan, 640, 480, 3, TrackConfig())
    with pytest.raises(ValueError, match="stride"):
        link(one.assign(frame=1), 640, 480, 3, TrackConfig(min_length=1))
    with pytest.raises(ValueError, match="not one of"):
        link(one, 640, 480, 3, TrackConfig(method="kalman"))


def _partition(tracks: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(sorted(g["box"])) for _, g in tracks.groupby("track"))


def test_trackpy_links_as_its_own_search_does_and_a_crowd_too():
    """trackpy's subnets are solved as an assignment: the same tracks as trackpy's recursive search on
    random walkers, and a crowd of 40 boxes within one search radius (trackpy's search refuses subnets over
    30, and is exponential in their size below that: a weak model's dense boxes stalled a clip) links."""
    import trackpy as tp

    rng = np.random.default_rng(0)
    cfg = TrackConfig(method="trackpy", min_length=1, memory=3)
    cols = ["frame", "cls", "cx", "cy", "w", "h", "conf"]
    for _ in range(5):
        pos = rng.uniform(0, 200, (30, 2))
        rows = []
        for t in range(15):
            pos = pos + rng.normal(0, 4.0, pos.shape)
            rows += [(t * STRIDE, 0, x / 640, y / 480, 0.04, 0.05, 0.9) for x, y in pos[rng.random(30) > 0.1]]
        boxes = pd.DataFrame(rows, columns=cols).rename_axis("box").reset_index()
        ours = link(boxes, 640, 480, STRIDE, cfg)
        f = boxes.assign(x=boxes["cx"] * 640, y=boxes["cy"] * 480, t=boxes["frame"] // STRIDE)
        theirs = tp.link_df(f, cfg.max_speed_px * STRIDE, pos_columns=["x", "y"], t_column="t", memory=3,
                            link_strategy="recursive")  # fmt: skip
        assert len(ours) == len(boxes) and _partition(ours) == _partition(theirs.rename(columns={"particle": "track"}))
        assert ours["track"].nunique() < len(boxes) / 5  # walkers were linked, not left one box each

    crowd = np.concatenate([rng.uniform(300, 310, (40, 2)) for _ in range(4)])
    boxes = pd.DataFrame(
        [(t * STRIDE, 0, x / 640, y / 480, 0.04, 0.05, 0.5) for t in range(4) for x, y in crowd[40 * t : 40 * t + 40]],
        columns=cols,
    )
    f = boxes.assign(x=boxes["cx"] * 640, y=boxes["cy"] * 480, t=boxes["frame"] // STRIDE)
    with pytest.raises(tp.SubnetOversizeException):  # what the crowd does to trackpy's own search
        tp.link_df(f, 18.0, pos_columns=["x", "y"], t_column="t", link_strategy="recursive")
    tracks = link(boxes, 640, 480, STRIDE, cfg)
    assert len(tracks) == 160 and tracks.groupby("track").size().eq(4).all()  # 40 full-length tracks


def noisy_predictions(t: pd.DataFrame, rng) -> list[tuple]:
    """Truth boxes at the stride, jittered by 1 px, one in ten dropped, plus a few false boxes."""
    b = truth_boxes(t)
    b = b[rng.random(len(b)) > 0.1]
    rows = [
        (int(r.frame), int(r.cls), r.cx + rng.normal(0, 1 / 640), r.cy + rng.normal(0, 1 / 480), r.w, r.h,
         float(rng.uniform(0.3, 0.95)))
        for r in b.itertuples()
    ]  # fmt: skip
    frames = sorted(set(b["frame"]))
    rows += [(int(f), 0, rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), 0.04, 0.05, 0.2) for f in frames[::4]]
    return rows


def test_track_command_writes_scores_and_resumes(twin, tmp_path):
    root, truths = twin
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(root)}, "track": {"method": "bytetrack"}}))
    rng = np.random.default_rng(1)
    preds = ws / "data" / "rounds" / "round-0" / "predictions"
    for name, t in truths.items():
        write_predictions(preds, name, noisy_predictions(t, rng), frames_scored=30, stride=STRIDE)

    out = json.loads(run(["visem-pl", "track", "--round", "0", "--params", "params.yaml"], ws).stdout)
    assert out["clips"] == len(truths) and out["skipped"] == 0 and out["stride"] == STRIDE
    assert out["tracking_truth_boxes"]["idf1"] >= 0.9
    assert 0.6 <= out["tracking"]["idf1"] <= out["tracking_truth_boxes"]["idf1"] + 0.05, out
    written = json.loads((ws / "metrics" / "rounds" / "round-0" / "track.json").read_text())
    assert written["tracking"] == out["tracking"]
    files = sorted((ws / "data" / "rounds" / "round-0" / "tracks").glob("*.parquet"))
    assert [f.stem for f in files] == sorted(truths)
    tracks = pd.read_parquet(files[0])
    assert set(tracks["source"]) <= {"detected", "interpolated"} and (tracks["frame"] % STRIDE == 0).all()
    assert (tracks.groupby("track")["frame"].size() >= 3).all()

    # Motility from those tracks: per clip and participant, its error against the simulated cells, the
    # tracker fed the truth boxes and the twin's semen analysis CSV.
    mot = json.loads(run(["visem-pl", "motility", "--round", "0", "--params", "params.yaml", "--json"], ws).stdout)
    assert sorted(c["clip"] for c in mot["clips"]) == sorted(truths)
    assert {p["participant"] for p in mot["participants"]} == {11, 12}
    for row in mot["clips"] + mot["participants"]:
        assert row["tracks"] > 0 and sum(row[k] for k in ("pr", "np", "im")) == pytest.approx(100.0)
    for key in ("mae_pp", "mae_pp_truth_boxes", "mae_pp_truth_paths", "mae_pp_lab"):
        assert all(0 <= mot[key][k] <= 100 for k in ("pr", "np", "im")), (key, mot[key])
    assert mot["tracking"]["idf1"] == out["tracking"]["idf1"] and "hota" in mot["tracking_truth_boxes"]
    assert (ws / "data" / "rounds" / "round-0" / "motility.csv").exists()
    table = run(["visem-pl", "motility", "--round", "0", "--params", "params.yaml"], ws).stdout
    assert "| clip | participant |" in table and "MAE vs the simulated cells" in table
    # The per-round report carries both, with every column title whole even when piped.
    report = run(["visem-pl", "report"], ws).stdout
    assert "IDF1" in report and "motil. MAE" in report and "mAP50-95" in report
    mae = np.mean([mot["mae_pp"][k] for k in ("pr", "np", "im")])
    assert f"{out['tracking']['idf1']:.3f}" in report and f"{mae:.1f}" in report

    again = json.loads(run(["visem-pl", "track", "--round", "0", "--params", "params.yaml"], ws).stdout)
    assert again["skipped"] == len(truths) and again["tracking"] == out["tracking"]

    # Other settings redo every clip; a damaged prediction file is named, and nothing is half-written.
    (ws / "params.yaml").write_text(
        yaml.safe_dump({"data": {"root": str(root)}, "track": {"method": "trackpy", "min_length": 5}})
    )
    name = sorted(truths)[0]
    write_predictions(preds, name, [(0, 0, float("nan"), 0.5, 0.04, 0.05, 0.9)], frames_scored=30, stride=STRIDE)
    before = {f.name: f.read_bytes() for f in files}
    bad = run(["visem-pl", "track", "--round", "0", "--params", "params.yaml"], ws, check=False)
    assert bad.returncode == 2 and f"{name}.parquet" in bad.stderr and "NaN" in bad.stderr, bad.stderr
    # The damaged clip's file is left as it was; the others, linked meanwhile in other worker processes
    # (track.workers), are each either untouched or whole and current for the new settings.
    from visem_pl.tasks.tracking.clips import read_tracks

    assert (files[0].stem == name) and files[0].read_bytes() == before[files[0].name]
    for f in files[1:]:
        assert f.read_bytes() == before[f.name] or read_tracks(f)[1]["config"]["min_length"] == 5
    assert not list((ws / "data" / "rounds" / "round-0" / "tracks").glob(".*.tmp"))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A twin with one annotated video long enough to track (its labels_ftid carry the track ids)."""
    root = tmp_path_factory.mktemp("tracking") / "labelled"
    return tiny_twin(root, seed=4, videos=(52,), frames_per_video=45, frames_per_clip=45)


def test_labelled_track_ids_are_read_and_scored(labelled):
    from visem_pl.tasks.dataset.labels import read_ftid_tracks

    video = locate(labelled).videos[52]
    labels = read_ftid_tracks(video)
    lines = sum(len(p.read_text().splitlines()) for p in video.ftid_dir.glob("*.txt"))
    assert len(labels) == lines and labels["track_id"].str.len().eq(25).all()
    perfect = labels.assign(track=pd.factorize(labels["track_id"])[0])
    assert score([(labels, perfect)], 1)["idf1"] == 1.0
    rng = np.random.default_rng(0)
    scrambled = perfect.assign(track=rng.permutation(perfect["track"].to_numpy()))
    assert score([(labels, scrambled)], 1)["idf1"] < 0.5


def test_track_command_scores_the_validation_videos_on_their_labels(labelled, tmp_path):
    """Real data has no synthetic truth: `track` scores the validation videos' predictions against their
    labels_ftid track ids (end to end and the tracker fed the labelled boxes), and motility reports it."""
    import shutil

    from visem_pl.tasks.dataset.labels import read_ftid_tracks

    root = tmp_path / "real"
    shutil.copytree(labelled, root)
    shutil.rmtree(root / "_truth")  # as real data: no truth beside the layout
    ws = tmp_path / "ws"
    ws.mkdir()
    params = {"data": {"root": str(root)}, "split": {"val_ids": [52]}, "track": {"method": "auto"}}
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    ds = locate(root)
    labels = read_ftid_tracks(ds.videos[52])
    rng = np.random.default_rng(2)
    rounds = ws / "data" / "rounds" / "round-0"
    write_predictions(rounds / "validation" / "predictions", "52", noisy_predictions(labels, rng), 15, STRIDE)
    for clip in ds.clips():  # the clips have no truth: the video's boxes stand in for theirs
        write_predictions(rounds / "predictions", clip.name, noisy_predictions(labels, rng), 15, STRIDE)

    out = json.loads(run(["visem-pl", "track", "--round", "0", "--params", "params.yaml"], ws).stdout)
    assert "tracking" not in out  # no synthetic truth
    # `auto`: every method linked the validation video; the best IDF1 against its labels was used.
    trial = out["method_trial"]
    assert set(trial["scores"]) == set(METHODS) and trial["videos"] == [52]
    best = max(s["idf1"] for s in trial["scores"].values())
    assert out["method"] == trial["chosen"] and trial["scores"][trial["chosen"]]["idf1"] == best
    val = out["validation"]
    assert val["tracking"]["idf1"] == best  # the validation video tracked with the chosen method
    assert val["videos"] == [52] and val["stride"] == STRIDE
    assert val["tracking_label_boxes"]["idf1"] >= 0.9, val
    assert 0.5 <= val["tracking"]["idf1"] <= val["tracking_label_boxes"]["idf1"] + 0.05, val
    assert (rounds / "validation" / "tracks" / "52.parquet").exists()
    mot = json.loads(run(["visem-pl", "motility", "--round", "0", "--params", "params.yaml", "--json"], ws).stdout)
    assert mot["tracking_scored_on"] == "validation labels"
    assert mot["tracking"]["idf1"] == val["tracking"]["idf1"] and "mae_pp" not in mot
    assert all(mot["mae_pp_lab"][k] is not None for k in ("pr", "np", "im")), mot["mae_pp_lab"]
    # The report shows them too: the validation videos' IDF1, the error against the lab's values.
    report = json.loads(run(["visem-pl", "report", "--json"], ws).stdout)["latest"]
    lab = np.mean([mot["mae_pp_lab"][k] for k in ("pr", "np", "im")])
    assert report["tracking_idf1"] == val["tracking"]["idf1"] and report["motility_mae_pp"] == round(lab, 1)

    # A malformed labels_ftid line is named with its file and line; the scores are not rewritten.
    before = (ws / "metrics" / "rounds" / "round-0" / "track.json").read_bytes()
    bad = sorted(ds.videos[52].ftid_dir.glob("*.txt"))[3]
    bad.write_text(bad.read_text() + "ckz3v9nzv00033867jsekqdcl 0 0.5 0.5 0.04\n")
    failed = run(["visem-pl", "track", "--round", "0", "--params", "params.yaml"], ws, check=False)
    n = len(bad.read_text().splitlines())
    assert failed.returncode == 2 and f"{bad}:{n}: " in failed.stderr and "5 fields" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert (ws / "metrics" / "rounds" / "round-0" / "track.json").read_bytes() == before


def test_auto_needs_the_validation_videos_predicted(labelled, tmp_path):
    """`auto` with no validation video predicted falls back to trackpy and says why; link() refuses an
    unresolved `auto`."""
    from visem_pl.tasks.tracking.stages import resolve_track_config
    from visem_pl.tasks.workspace.paths import Workspace

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"data": {"root": str(labelled)}, "split": {"val_ids": [52]}, "track": {"method": "auto"}})
    )
    cfg, trial = resolve_track_config(Workspace(tmp_path, tmp_path / "params.yaml"), 0)
    assert cfg.method == "trackpy" and trial == {"chosen": "trackpy", "why": "no validation video predicted"}
    one = pd.DataFrame([(0, 0, 0.5, 0.5, 0.04, 0.05, 0.9)], columns=["frame", "cls", "cx", "cy", "w", "h", "conf"])
    with pytest.raises(ValueError, match="must be resolved"):
        link(one, 640, 480, 3, TrackConfig(method="auto"))


def test_track_workers_give_the_same_outputs_and_motility_reuses_the_truth_box_tracks(twin, tmp_path, monkeypatch):
    """`track.workers` spreads the clips over processes: tracks, track.json and motility are the same bytes
    as in one process. The tracker fed the truth boxes runs once, in `track`: `motility` reads its tracks
    from the round's cache (the tracker is never called), and other settings make them again."""
    from visem_pl.tasks.tracking import clips as clips_mod
    from visem_pl.tasks.tracking.stages import motility_stage, track_stage, truth_tracks_cache
    from visem_pl.tasks.workspace.paths import Workspace

    root, truths = twin
    rng = np.random.default_rng(5)
    rows = {name: noisy_predictions(t, rng) for name, t in truths.items()}
    made = {}
    for workers in (1, 2):
        ws = tmp_path / f"w{workers}"
        params = {"data": {"root": str(root)}, "track": {"method": "sort", "workers": workers},
                  "motility": {"workers": workers}}  # fmt: skip
        (ws / "params.yaml").parent.mkdir()
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        for name, r in rows.items():
            write_predictions(ws / "data/rounds/round-0/predictions", name, r, frames_scored=30, stride=STRIDE)
        w = Workspace(ws, ws / "params.yaml")
        stats = track_stage(w, 0, progress=False)
        assert stats["clips"] == len(truths) and "tracking_truth_boxes" in stats
        assert sorted(p.stem for p in truth_tracks_cache(w, 0).glob("*.parquet")) == sorted(truths)
        if workers == 1:  # in this process: the tracker must not run again for motility
            with monkeypatch.context() as m:
                m.setattr(clips_mod, "link", lambda *a, **k: pytest.fail("motility ran the tracker"))
                motility_stage(w, 0)
        else:
            motility_stage(w, 0)
        made[workers] = {p.relative_to(ws): p.read_bytes() for p in sorted((ws / "data/rounds/round-0").rglob("*"))
                         if p.is_file() and "predictions" not in p.parts}  # fmt: skip
        for name in ("track.json", "motility.json"):
            made[workers][name] = json.loads((ws / "metrics/rounds/round-0" / name).read_text())
            made[workers][name].pop("computed_from")
    assert made[1] == made[2] and any(p.suffix == ".csv" for p in made[1] if not isinstance(p, str))

    # Other settings: the tracks and the truth-box tracks are made again (the cache is keyed on them).
    import pyarrow.parquet as pq

    ws = tmp_path / "w1"
    w = Workspace(ws, ws / "params.yaml")
    track = {"method": "sort", "min_length": 6, "workers": 1}
    (ws / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(root)}, "track": track}))
    assert track_stage(w, 0, progress=False)["skipped"] == 0
    for p in truth_tracks_cache(w, 0).glob("*.parquet"):
        meta = json.loads(pq.read_schema(p).metadata[clips_mod.META_KEY])
        assert meta["config"]["min_length"] == 6 and "workers" not in meta["config"]
        assert (pq.read_table(p).to_pandas().groupby("track").size() >= 6).all()


def test_motility_measures_each_clips_window_at_every_frame(twin, tmp_path):
    """motility.window_s: `track` links each clip's window (run by `infer` at every frame) into
    motility/tracks with the round's tracker and scores it; `motility` measures those tracks at the full
    rate, against the truth of the window's frames only."""
    from visem_pl.tasks.tracking.clips import read_tracks
    from visem_pl.tasks.tracking.stages import covered, motility_stage, track_stage, truth_tracks_cache
    from visem_pl.tasks.workspace.paths import Workspace

    root, truths = twin
    ws = tmp_path / "ws"
    ws.mkdir()
    window = 50  # frames: 1 s at the twin's 50 fps, of its 90-frame clips
    params = {"data": {"root": str(root)}, "track": {"method": "sort", "workers": 1},
              "motility": {"workers": 1, "window_s": 1.0, "frame_step": 1, "immotile_vcl_um_s": 15.0}}  # fmt: skip
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(2)
    for name, t in truths.items():
        write_predictions(ws / "data/rounds/round-0/predictions", name, noisy_predictions(t, rng), frames_scored=30,
                          stride=STRIDE)  # fmt: skip
        exact = [(int(r.frame), int(r.cls), r.cx, r.cy, r.w, r.h, 0.9) for r in truth_boxes(t, 1).itertuples()
                 if r.frame < window]  # fmt: skip
        write_predictions(ws / "data/rounds/round-0/motility/predictions", name, exact, frames_scored=window)
    w = Workspace(ws, ws / "params.yaml")
    stats = track_stage(w, 0, progress=False)
    assert stats["stride"] == STRIDE  # the round's own tracks, as before
    win = stats["motility_window"]
    assert win["clips"] == len(truths) and win["stride"] == 1 and win["tracking_truth_boxes"]["idf1"] > 0.9
    assert sorted(p.stem for p in truth_tracks_cache(w, 0, window=True).glob("*.parquet")) == sorted(truths)
    for name in truths:
        tracks, meta = read_tracks(w.round(0).motility_tracks / f"{name}.parquet")
        assert meta["stride"] == 1 and tracks["frame"].max() < window
        assert covered(truths[name], meta)["frame"].max() == window - 1
    result = motility_stage(w, 0)
    assert result["window_s"] == 1.0 and result["frame_step"] == 1
    # The window's exact boxes: the round's window tracks are the tracker fed the truth boxes, to the digit.
    assert result["mae_pp"] == result["mae_pp_truth_boxes"] and result["mae_pp"]["n"] == len(truths)
    # A shorter window: the window's tracks and the tracker fed its truth boxes are made again for it.
    import pyarrow.parquet as pq

    from visem_pl.tasks.tracking.clips import META_KEY

    for name, t in truths.items():
        exact = [(int(r.frame), int(r.cls), r.cx, r.cy, r.w, r.h, 0.9) for r in truth_boxes(t, 1).itertuples()
                 if r.frame < 30]  # fmt: skip
        write_predictions(ws / "data/rounds/round-0/motility/predictions", name, exact, frames_scored=30)
    assert track_stage(w, 0, progress=False)["motility_window"]["skipped"] == 0
    for p in truth_tracks_cache(w, 0, window=True).glob("*.parquet"):
        assert json.loads(pq.read_schema(p).metadata[META_KEY])["frames_scored"] == 30
        assert pq.read_table(p).to_pandas()["frame"].max() < 30
    # Without the window, motility reads the round's tracks (stride 3: frame_step 3 and its threshold).
    params["motility"] = {"workers": 1, "frame_step": 3, "immotile_vcl_um_s": 5.0}
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    assert motility_stage(w, 0)["window_s"] is None
