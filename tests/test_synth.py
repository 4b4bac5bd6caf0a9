"""The synthetic twin writes the real layout, honours the real counts, and is reproducible."""

from __future__ import annotations

import csv
import filecmp
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.synth import SynthConfig, synthesize

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / layout.COUNTS_CSV
VIDEOS = (11, 23, 24)
CFG = SynthConfig(
    seed=7,
    videos=VIDEOS,
    frames_per_video=60,
    rest_clips_per_video=1,
    other_videos=2,
    clips_per_other_video=1,
    frames_per_clip=20,
    workers=2,
)
NUMBER = re.compile(r"^(0|1|0\.\d{1,9})$")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "twin"
    return root, synthesize(root, CFG, progress=False)


@pytest.fixture(scope="module")
def same_seed_one_worker(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_again") / "twin"
    synthesize(root, SynthConfig(**{**CFG.__dict__, "workers": 1}), progress=False)
    return root


def video_dir(root: Path, vid: int) -> Path:
    return root / layout.TRAIN_DIR / layout.VIDEOS_DIR / str(vid)


def read_labels(root: Path, vid: int) -> dict[int, list[list[str]]]:
    out = {}
    for p in (video_dir(root, vid) / "labels").iterdir():
        frame = int(layout.LABEL_NAME_RE.match(p.name)["frame"])
        out[frame] = [line.split() for line in p.read_text().splitlines()]
    return out


def reference_targets(vid: int, n: int, scale: float) -> dict[int, tuple[int, int, int]]:
    """Expected per-frame counts, re-derived from the real CSV independently of the generator."""
    ref = pd.read_csv(REFERENCE, skipinitialspace=True)
    ref = ref[ref["frame_name"].str.startswith(f"{vid}_frame_")]
    real = {
        int(r.frame_name.rsplit("_", 1)[1]): (r.sperm_count, r.cluster_count, r.small_or_pinhead_count)
        for r in ref.itertuples()
    }
    n_real = {35: 1440, 52: 1440, 82: 1500}.get(vid, 1470)
    expected = {}
    for t in range(n):
        f = t * n_real // n
        if f in real:
            c = [int(np.floor(v * scale + 0.5)) for v in real[f]]
            if sum(c) == 0:
                c[int(np.argmax(real[f]))] = 1
            expected[t] = tuple(c)
    return expected


def test_counts_equal_what_is_on_disk(out):
    root, counts = out
    images = label_files = 0
    boxes = {k: 0 for k in layout.CLASS_NAMES}
    tracks = {k: set() for k in layout.CLASS_NAMES}
    for vid in VIDEOS:
        vdir = video_dir(root, vid)
        images += len(list((vdir / "images").glob("*.jpg")))
        label_files += len(list((vdir / "labels").glob("*.txt")))
        for p in (vdir / "labels_ftid").iterdir():
            for line in p.read_text().splitlines():
                tid, c = line.split()[:2]
                boxes[layout.CLASS_NAMES[int(c)]] += 1
                tracks[layout.CLASS_NAMES[int(c)]].add(tid)
    rest = list((root / layout.CLIPS_REST_DIR / layout.CLIPS_REST_DIR).glob("*.mp4"))
    other = list((root / layout.CLIPS_OTHER_DIR / layout.CLIPS_OTHER_DIR).glob("*.mp4"))
    with open(root / layout.PARTICIPANT_CSV, encoding="utf-8") as f:
        participants = sum(1 for _ in f) - 1
    assert counts == {
        "videos": len(VIDEOS),
        "images": images,
        "label_files": label_files,
        "frames_without_labels": images - label_files,
        "boxes": boxes,
        "tracks": {k: len(v) for k, v in tracks.items()},
        "clips": {"annotated_rest": len(rest), "other": len(other)},
        "participants": participants,
    }
    assert images == 60 * len(VIDEOS) and len(rest) == 3 and len(other) == 2
    assert json.loads((root / layout.TRUTH_DIR / "summary.json").read_text()) == counts


def test_layout_and_label_format(out):
    root, _ = out
    assert sorted(p.name for p in (root / layout.TRAIN_DIR / layout.VIDEOS_DIR).iterdir()) == sorted(map(str, VIDEOS))
    for vid in VIDEOS:
        vdir = video_dir(root, vid)
        for img in (vdir / "images").iterdir():
            assert layout.IMAGE_NAME_RE.match(img.name)
        frame = cv2.imread(str(vdir / "images" / layout.image_name(vid, 0)))
        assert frame.shape == (layout.IMAGE_HEIGHT, layout.IMAGE_WIDTH, 3)
        listed = (vdir / f"{vid}.txt").read_text().splitlines()
        assert sorted(Path(p).name for p in listed) == sorted(p.name for p in (vdir / "labels").iterdir())
        for lab in (vdir / "labels").iterdir():
            frame = layout.LABEL_NAME_RE.match(lab.name)["frame"]
            plain = lab.read_text().splitlines()
            ftid = (vdir / "labels_ftid" / layout.ftid_name(vid, int(frame))).read_text().splitlines()
            assert plain and len(plain) == len(ftid)  # never an empty label file
            for p_line, f_line in zip(plain, ftid):
                tid, rest = f_line.split(" ", 1)
                assert rest == p_line
                assert len(tid) == layout.TRACK_ID_LENGTH and re.fullmatch(r"c[0-9a-z]{24}", tid)
                c, *nums = p_line.split()
                assert c in {"0", "1", "2"}
                assert all(NUMBER.match(v) and len(v.lstrip("0.")) <= 8 for v in nums), p_line
        assert len(list((vdir / "labels_ftid").iterdir())) == len(list((vdir / "labels").iterdir()))


def test_per_frame_counts_follow_reference(out):
    root, _ = out
    written = pd.read_csv(root / layout.COUNTS_CSV, skipinitialspace=True)
    assert list(written.columns) == list(layout.COUNTS_HEADER)
    assert (root / layout.COUNTS_CSV).read_text().splitlines()[0] == ", ".join(layout.COUNTS_HEADER)
    csv_rows = {r.frame_name: (r.sperm_count, r.cluster_count, r.small_or_pinhead_count) for r in written.itertuples()}
    for vid in VIDEOS:
        expected = reference_targets(vid, 60, CFG.scale)
        labels = read_labels(root, vid)
        assert set(labels) == set(expected), vid
        for t, lines in labels.items():
            got = tuple(sum(1 for ln in lines if ln[0] == str(k)) for k in range(3))
            assert got == expected[t], (vid, t)
            assert csv_rows[f"{vid}_frame_{t}"] == got
    assert len(csv_rows) == sum(len(read_labels(root, v)) for v in VIDEOS)
    # Video 23's real empty runs (frames 823-972 and 1084-1107) survive the resampling.
    empty_23 = set(range(60)) - set(read_labels(root, 23))
    assert empty_23 == {t for t in range(60) if 823 <= t * 1470 // 60 <= 972 or 1084 <= t * 1470 // 60 <= 1107}
    assert len(empty_23) >= 2
    # Video 24 is dense: around 60 sperm in every frame.
    assert np.mean([len(v) for v in read_labels(root, 24).values()]) > 55


def test_scale_changes_concentration(tmp_path):
    counts = synthesize(
        tmp_path / "half",
        SynthConfig(
            seed=3, videos=(24,), frames_per_video=8, scale=0.5, rest_clips_per_video=0, other_videos=0, workers=1
        ),
        progress=False,
    )
    expected = reference_targets(24, 8, 0.5)
    assert counts["boxes"]["sperm"] == sum(v[0] for v in expected.values())
    assert 20 * 8 < counts["boxes"]["sperm"] < 40 * 8


def test_motility_columns_agree_with_simulated_cells(out):
    root, _ = out
    semen = pd.read_csv(root / layout.SEMEN_CSV, encoding="utf-8")
    cells = pd.read_csv(root / layout.TRUTH_DIR / "cells.csv", keep_default_na=False)
    sperm = cells[
        (cells["class"] == 0) & (cells["labelled"].astype(str) == "True") & cells["kind"].isin(["video", "rest"])
    ]
    assert sorted(semen["ID"]) == sorted(VIDEOS)
    for row in semen.itertuples(index=False):
        vid = row[0]
        pct = semen.loc[semen["ID"] == vid, list(layout.MOTILITY_COLS)].iloc[0].to_numpy()
        assert pct.sum() == 100
        n = sperm[sperm["video_id"] == vid]["motility"].value_counts()
        shares = np.array([n.get(m, 0) for m in ("progressive", "non_progressive", "immotile")], float)
        assert shares.sum() > 0
        # Largest remainder: each percentage is within 1 of the exact share.
        assert np.all(np.abs(pct - 100 * shares / shares.sum()) < 1), (vid, pct, shares)


def test_clinical_headers_are_exact(out):
    root, _ = out
    for name, header in layout.CLINICAL_HEADERS.items():
        with open(root / name, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == header, name
        assert [int(r[0]) for r in rows[1:]] == sorted(VIDEOS)
        assert all(len(r) == len(header) for r in rows)


def test_truth_is_outside_the_real_layout(out):
    root, _ = out
    truth = root / layout.TRUTH_DIR
    assert (truth / "cells.csv").exists() and (truth / "summary.json").exists()
    for sub in (layout.TRAIN_DIR, layout.CLIPS_REST_DIR, layout.CLIPS_OTHER_DIR):
        names = {p.name for p in (root / sub).rglob("*")}
        assert not any(n.startswith("_truth") or n.endswith((".parquet", ".json")) for n in names)
    clips = sorted(
        p.stem for d in (layout.CLIPS_REST_DIR, layout.CLIPS_OTHER_DIR) for p in (root / d / d).glob("*.mp4")
    )
    assert sorted(p.stem for p in (truth / "clips").glob("*.parquet")) == clips
    for stem in clips:
        t = pd.read_parquet(truth / "clips" / f"{stem}.parquet")
        assert set(t.columns) >= {"frame", "track_id", "class", "cx", "cy", "w", "h", "motility"}
        assert t["frame"].between(0, CFG.frames_per_clip - 1).all()
    # The per-video truth carries exactly the labelled boxes, plus motility per track.
    t = pd.read_parquet(truth / "videos" / "11.parquet")
    labels = read_labels(root, 11)
    assert len(t) == sum(len(v) for v in labels.values())
    assert set(t["motility"]) <= {"progressive", "non_progressive", "immotile"}
    assert t.groupby("track_id")["motility"].nunique().max() == 1


def test_box_sizes_are_near_real(out):
    root, _ = out
    sizes = {0: [], 1: [], 2: []}
    for vid in VIDEOS:
        for lines in read_labels(root, vid).values():
            for c, _, _, w, h in lines:
                sizes[int(c)].append((float(w) * layout.IMAGE_WIDTH, float(h) * layout.IMAGE_HEIGHT))
    sperm = np.array(sizes[0])
    assert 19 <= np.median(sperm[:, 0]) <= 27 and 19 <= np.median(sperm[:, 1]) <= 27
    cluster = np.array(sizes[1])
    assert len(cluster) and 45 <= np.median(cluster[:, 0]) <= 70 and 40 <= np.median(cluster[:, 1]) <= 64


def test_mp4_frames_and_fps(out):
    root, _ = out
    mp4s = [(video_dir(root, v) / f"{v}.mp4", 60) for v in VIDEOS]
    for d in (layout.CLIPS_REST_DIR, layout.CLIPS_OTHER_DIR):
        mp4s += [(p, CFG.frames_per_clip) for p in (root / d / d).glob("*.mp4")]
    for path, n in mp4s:
        cap = cv2.VideoCapture(str(path))
        assert cap.isOpened(), path
        fps, frames = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        assert 45 <= fps <= 50, (path, fps)
        assert frames == n, path
        assert layout.CLIP_NAME_RE.match(path.name) or path.stem.isdigit()


def test_same_seed_is_byte_identical_for_any_worker_count(out, same_seed_one_worker):
    root, _ = out
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(same_seed_one_worker) for p in same_seed_one_worker.rglob("*") if p.is_file())
    # jpg/mp4 included: cv2's encoders are deterministic on one machine.
    different = [str(f) for f in files if not filecmp.cmp(root / f, same_seed_one_worker / f, shallow=False)]
    assert different == []


def test_other_seed_differs(out, tmp_path):
    root, _ = out
    other = tmp_path / "other"
    synthesize(
        other,
        SynthConfig(**{**CFG.__dict__, "seed": 8, "videos": (11,), "other_videos": 0, "rest_clips_per_video": 0}),
        progress=False,
    )
    lab = Path(layout.TRAIN_DIR, layout.VIDEOS_DIR, "11", "labels_ftid", layout.ftid_name(11, 0))
    assert (root / lab).read_text() != (other / lab).read_text()
    ids_a = {ln.split()[0] for p in (root / lab.parent).iterdir() for ln in p.read_text().splitlines()}
    ids_b = {ln.split()[0] for p in (other / lab.parent).iterdir() for ln in p.read_text().splitlines()}
    assert not ids_a & ids_b


def test_refuses_to_overwrite_non_empty_output(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    cfg = SynthConfig(videos=(14,), frames_per_video=3, rest_clips_per_video=0, other_videos=0, workers=1)
    with pytest.raises(FileExistsError):
        synthesize(target, cfg, progress=False)
    assert (target / "keep.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temporary folder left behind
    counts = synthesize(target, cfg, progress=False, overwrite=True)
    assert counts["images"] == 3 and not (target / "keep.txt").exists()
