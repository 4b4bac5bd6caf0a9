"""The reader: where things are (`locate`), what the containers say (`probe_video`), the clinical
CSVs (`tasks.clinical`) and the train/validation split."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.clinical import motility, read_clinical
from visem_pl.tasks.dataset.reader import DatasetNotFound, locate, probe_video
from visem_pl.tasks.dataset.validate import validate

ALL_CSVS = sorted({layout.COUNTS_CSV, *layout.CLINICAL_CSVS})


# ---------------------------------------------------------------- locate


@pytest.mark.parametrize("level", ["zip_root", "v4", "train"])
def test_locate_accepts_every_level(small_tree_pristine, level):
    tree = small_tree_pristine
    given = {"zip_root": tree.root, "v4": tree.root / layout.TRAIN_DIR, "train": tree.train}[level]
    ds = locate(given)
    assert ds.top == tree.root
    assert ds.train_dir == tree.train
    assert list(ds.videos) == [11, 23]
    assert ds.videos[11].dir == tree.video_dir(11)
    assert ds.csvs == {name: tree.root / name for name in ALL_CSVS}
    assert ds.clip_dirs == {
        "annotated_rest": tree.root / layout.CLIPS_REST_DIR / layout.CLIPS_REST_DIR,
        "other": tree.root / layout.CLIPS_OTHER_DIR / layout.CLIPS_OTHER_DIR,
    }
    assert [(c.video_id, c.start_s, c.stop_s, c.group) for c in ds.clips()] == [
        (11, 30, 60, "annotated_rest"),
        (25, 0, 30, "other"),
    ]
    assert ds.odd_clip_files == []


def test_locate_accepts_a_relative_path(small_tree_pristine, monkeypatch):
    monkeypatch.chdir(small_tree_pristine.root.parent)
    ds = locate(small_tree_pristine.root.name)
    assert ds.top == small_tree_pristine.root and list(ds.videos) == [11, 23]


def test_video_paths_and_frames(small_tree_pristine):
    tree = small_tree_pristine
    video = locate(tree.root).videos[23]
    assert video.id == 23
    assert video.images_dir == tree.video_dir(23) / "images"
    assert video.mp4 == tree.mp4(23)
    assert video.image_path(7) == tree.image(23, 7)
    assert video.label_path(7) == tree.label(23, 7)
    assert video.ftid_path(7) == tree.ftid(23, 7)
    assert video.ftid_path(7).name == "23_frame_7_with_ftid.txt"
    assert video.frames() == list(range(20))  # numeric order, not 0, 1, 10, 11, ...
    assert video.labelled_frames() == list(range(20))


def _move_csvs_beside_train(root: Path) -> Path:
    target = root / layout.TRAIN_DIR
    for name in ALL_CSVS:
        shutil.move(root / name, target / name)
    return target


def _nest_clips_once(root: Path) -> None:
    for folder in (layout.CLIPS_REST_DIR, layout.CLIPS_OTHER_DIR):
        outer = root / folder
        inner = outer / folder
        for f in list(inner.iterdir()):
            shutil.move(f, outer / f.name)
        inner.rmdir()


@pytest.mark.parametrize("level", ["zip_root", "v4", "train"])
def test_locate_finds_csvs_beside_train(small_tree, level):
    v4 = _move_csvs_beside_train(small_tree.root)
    given = {"zip_root": small_tree.root, "v4": v4, "train": small_tree.train}[level]
    ds = locate(given)
    assert ds.csvs == {name: v4 / name for name in ALL_CSVS}
    report = validate(given)
    assert report.problems == [] and report.summary == small_tree.expected


@pytest.mark.parametrize("level", ["zip_root", "v4", "train"])
def test_locate_finds_clip_folders_nested_once(small_tree, level):
    _nest_clips_once(small_tree.root)
    given = {"zip_root": small_tree.root, "v4": small_tree.root / layout.TRAIN_DIR, "train": small_tree.train}[level]
    ds = locate(given)
    assert ds.clip_dirs == {
        "annotated_rest": small_tree.root / layout.CLIPS_REST_DIR,
        "other": small_tree.root / layout.CLIPS_OTHER_DIR,
    }
    assert [(c.path, c.group) for c in ds.clips()] == [
        (small_tree.root / layout.CLIPS_REST_DIR / "11_30_60.mp4", "annotated_rest"),
        (small_tree.root / layout.CLIPS_OTHER_DIR / "25_0_30.mp4", "other"),
    ]
    report = validate(given)
    assert report.problems == [] and report.summary == small_tree.expected


def test_locate_with_csvs_beside_train_and_clips_nested_once(small_tree):
    v4 = _move_csvs_beside_train(small_tree.root)
    _nest_clips_once(small_tree.root)
    ds = locate(small_tree.train)
    assert ds.csvs[layout.SEMEN_CSV] == v4 / layout.SEMEN_CSV
    assert len(ds.clips()) == 2
    assert validate(small_tree.train).summary == small_tree.expected


def test_locate_without_train_folder_raises(tmp_path):
    (tmp_path / "VISEM_Tracking_Train_v4" / "Test").mkdir(parents=True)
    with pytest.raises(DatasetNotFound, match="no 'Train/' folder found within 4 levels"):
        locate(tmp_path)
    with pytest.raises(DatasetNotFound, match="not a folder"):
        locate(tmp_path / "missing")


def test_locate_reports_absent_csvs_and_clip_folders_as_none(tmp_path):
    (tmp_path / layout.TRAIN_DIR / layout.VIDEOS_DIR / "11").mkdir(parents=True)
    ds = locate(tmp_path)
    assert list(ds.videos) == [11]
    assert set(ds.csvs) == set(ALL_CSVS) and all(v is None for v in ds.csvs.values())
    assert ds.clip_dirs == {"annotated_rest": None, "other": None}
    assert ds.clips() == []


# ---------------------------------------------------------------- clips


def test_clips_are_parsed_and_grouped(small_tree):
    rest = small_tree.root / layout.CLIPS_REST_DIR / layout.CLIPS_REST_DIR
    other = small_tree.root / layout.CLIPS_OTHER_DIR / layout.CLIPS_OTHER_DIR
    for name in ("11_60_90.mp4", "82_120_150.mp4"):
        shutil.copyfile(rest / "11_30_60.mp4", rest / name)
    for name in ("7_0_30.mp4", "85_30_60.mp4"):
        shutil.copyfile(other / "25_0_30.mp4", other / name)
    ds = locate(small_tree.root)
    assert [(c.video_id, c.start_s, c.stop_s) for c in ds.clips("annotated_rest")] == [
        (11, 30, 60),
        (11, 60, 90),
        (82, 120, 150),
    ]
    assert [(c.video_id, c.start_s, c.stop_s) for c in ds.clips("other")] == [(7, 0, 30), (25, 0, 30), (85, 30, 60)]
    assert len(ds.clips()) == 6
    clip = ds.clips("annotated_rest")[2]
    assert clip.name == "82_120_150" and clip.path == rest / "82_120_150.mp4" and clip.group == "annotated_rest"
    assert validate(small_tree.root).summary["clips"] == {"annotated_rest": 3, "other": 3}


def test_unparseable_clip_names_are_set_aside(small_tree):
    rest = small_tree.root / layout.CLIPS_REST_DIR / layout.CLIPS_REST_DIR
    for name in ("11_thirty_60.mp4", "11_60_30.mp4", "11_30_60_b.mp4"):
        shutil.copyfile(rest / "11_30_60.mp4", rest / name)
    ds = locate(small_tree.root)
    assert sorted(p.name for p in ds.odd_clip_files) == ["11_30_60_b.mp4", "11_60_30.mp4", "11_thirty_60.mp4"]
    assert [c.name for c in ds.clips()] == ["11_30_60", "25_0_30"]


# ---------------------------------------------------------------- probe_video


def _write_mp4(path: Path, fps: float, frames: int, size=(96, 64)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 17) % 256, np.uint8))
    writer.release()


@pytest.mark.parametrize("fps,frames", [(47.5, 13), (50.0, 7), (45.0, 21)])
def test_probe_video_reads_fps_and_frames_from_the_container(tmp_path, fps, frames):
    path = tmp_path / "11.mp4"
    _write_mp4(path, fps, frames)
    info = probe_video(path)
    assert info.fps == pytest.approx(fps, abs=1e-6)
    assert info.frames == frames
    assert (info.width, info.height) == (96, 64)


def test_probe_video_rejects_truncated_and_garbage(tmp_path):
    path = tmp_path / "a.mp4"
    _write_mp4(path, 47.5, 13)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be opened as a video"):
        probe_video(path)
    path.write_bytes(b"not an mp4" * 100)
    with pytest.raises(ValueError, match="cannot be opened as a video"):
        probe_video(path)


# ---------------------------------------------------------------- clinical CSVs


def test_clinical_csvs_keep_their_exact_utf8_headers(small_tree_pristine):
    ds = locate(small_tree_pristine.root)
    for name, header in layout.CLINICAL_HEADERS.items():
        df = read_clinical(ds.csvs[name])
        assert tuple(df.columns) == header
        assert df["ID"].tolist() == [11, 23]
        assert df["ID"].dtype.kind == "i"
    participant = read_clinical(ds.csvs[layout.PARTICIPANT_CSV])
    assert "Body mass index (kg/m²)" in participant.columns
    assert participant.loc[0, "Age (years)"] == "Not reported"
    semen = read_clinical(ds.csvs[layout.SEMEN_CSV])
    assert "Sperm concentration (x10⁶/mL)" in semen.columns and "Total sperm count (x10⁶)" in semen.columns
    assert "Serum C20:5 n-3  (eicosapentaenoic acid, EPA)" in read_clinical(ds.csvs[layout.FA_SERUM_CSV]).columns
    assert "Seminal plasma anti-Müllerian hormone (AMH) (pmol/L)" in read_clinical(ds.csvs[layout.HORMONES_CSV]).columns


def _write_semen(path: Path, rows: list[list[str]]) -> None:
    # real style: a space after each comma, quoted names that contain commas
    header = ", ".join(f'"{h}"' if "," in h else h for h in layout.CLINICAL_HEADERS[layout.SEMEN_CSV])
    body = [", ".join(r) for r in rows]
    path.write_bytes(("\n".join([header, *body]) + "\n").encode("utf-8"))


def test_motility_from_the_semen_analysis(small_tree):
    n = len(layout.CLINICAL_HEADERS[layout.SEMEN_CSV])
    pr = layout.CLINICAL_HEADERS[layout.SEMEN_CSV].index(layout.PROGRESSIVE_COL)
    row11 = ["11"] + ["1.5"] * (n - 1)
    row11[pr : pr + 3] = ["11", "17", "72"]
    row23 = ["23"] + ["Not reported"] * (n - 1)
    row23[pr : pr + 3] = ["40.5", "Not reported", "59.5"]
    _write_semen(small_tree.csv(layout.SEMEN_CSV), [row23, row11])
    assert validate(small_tree.root).problems == []

    df = motility(locate(small_tree.root))
    assert list(df.columns) == ["ID", "progressive", "non_progressive", "immotile"]
    assert df["ID"].tolist() == [11, 23]
    assert df.iloc[0, 1:].tolist() == [11.0, 17.0, 72.0]
    assert df.loc[0, ["progressive", "non_progressive", "immotile"]].sum() == 100.0
    assert df.loc[1, "progressive"] == 40.5 and np.isnan(df.loc[1, "non_progressive"]) and df.loc[1, "immotile"] == 59.5


def test_motility_without_semen_csv(small_tree):
    small_tree.csv(layout.SEMEN_CSV).unlink()
    with pytest.raises(FileNotFoundError, match="semen_analysis_data_Train.csv"):
        motility(locate(small_tree.root))


def test_read_clinical_rejects_latin1_and_missing_columns(small_tree):
    path = small_tree.csv(layout.PARTICIPANT_CSV)
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"participant_related_data_Train.csv:0: not UTF-8"):
        read_clinical(path)
    path.write_text(text.replace("(kg/m²)", "(kg/m2)"), encoding="utf-8")
    with pytest.raises(ValueError, match=r":1: missing column\(s\) \['Body mass index \(kg/m²\)'\]"):
        read_clinical(path)
    path.write_text(text.replace("\n23,", "\nxx,"), encoding="utf-8")
    with pytest.raises(ValueError, match=r":3: ID 'xx' is not a participant number"):
        read_clinical(path)


def test_read_clinical_any_file_name_needs_only_an_id(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("ID, Note (µm)\n5, ok\n", encoding="utf-8")
    df = read_clinical(path)
    assert list(df.columns) == ["ID", "Note (µm)"]
    assert df.to_dict("records") == [{"ID": 5, "Note (µm)": "ok"}]
    assert isinstance(df, pd.DataFrame)


# ---------------------------------------------------------------- split


@pytest.fixture
def all_twenty(tmp_path):
    train = tmp_path / layout.TRAIN_DIR / layout.VIDEOS_DIR
    for vid in layout.ANNOTATED_IDS:
        (train / str(vid)).mkdir(parents=True)
    return locate(tmp_path)


def test_official_split(all_twenty):
    train, val = all_twenty.split()
    assert [v.id for v in val] == [52, 54, 60, 82]
    assert [v.id for v in train] == [11, 12, 13, 14, 15, 19, 21, 22, 23, 24, 29, 30, 35, 36, 38, 47]
    assert len(train) == 16


def test_custom_split(all_twenty):
    train, val = all_twenty.split(val_ids=[23, 11], train_ids=(12, 13))
    assert [v.id for v in val] == [11, 23] and [v.id for v in train] == [12, 13]
    train, val = all_twenty.split(val_ids=("82",))
    assert [v.id for v in val] == [82]
    assert len(train) == 19 and 82 not in [v.id for v in train]


def test_split_errors(all_twenty, small_tree_pristine):
    with pytest.raises(ValueError, match=r"validation video ids \[99\] are not in"):
        all_twenty.split(val_ids=(52, 99))
    with pytest.raises(ValueError, match=r"video ids \[52\] are in both the train and the validation split"):
        all_twenty.split(val_ids=(52, 54), train_ids=(11, 52))
    with pytest.raises(ValueError, match=r"training video ids \[7\] are not in"):
        all_twenty.split(val_ids=(52,), train_ids=(11, 7))
    # a tree without the official validation videos says which ones are missing
    with pytest.raises(ValueError, match=r"validation video ids \[52, 54, 60, 82\] are not in"):
        locate(small_tree_pristine.root).split()
