"""`validate` and `visem-pl validate`: a valid tree passes with exact counts; every malformed case
is reported as `path:line: message`, the CLI exits 2 with nothing on stdout, and nothing is written."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.trees import SMALL_FRAMES, SMALL_VIDEOS, tree_digest

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.counts import REFERENCE_COUNTS
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.validate import validate

SUMMARY_KEYS = ["videos", "images", "label_files", "frames_without_labels", "boxes", "tracks", "clips", "participants"]


# ---------------------------------------------------------------- helpers


def check_bad(
    tree, run_cli, expected: list[tuple[Path, int, str]], *cli_args: str, deep: bool = False, on_bad_clip="skip"
):
    """validate() reports exactly `expected` (path, line, message fragment), in any order; the CLI
    exits 2, prints nothing on stdout and every one of those problems on stderr; no file changes."""
    before = tree_digest(tree.root)
    report = validate(tree.root, deep=deep, on_bad_clip=on_bad_clip)
    cli_args = (*cli_args, "--on-bad-clip", on_bad_clip)
    got = sorted(((p.path, p.line, p.message) for p in report.problems), key=lambda t: (str(t[0]), t[1]))
    want = sorted(expected, key=lambda t: (str(t[0]), t[1]))
    assert [(p, n) for p, n, _ in got] == [(p, n) for p, n, _ in want], [str(p) for p in report.problems]
    for (_, _, message), (_, _, fragment) in zip(got, want):
        assert fragment in message
    assert not report.ok and report.truncated == 0

    rc, out, err = run_cli("validate", tree.root, *(["--deep"] if deep else []), *cli_args)
    assert rc == 2
    assert out == ""
    printed = [line for line in err.splitlines() if line.startswith(str(tree.root))]
    assert sorted(printed) == sorted(str(p) for p in report.problems)
    assert tree_digest(tree.root) == before
    return report


def set_line(path: Path, n: int, text: str | None) -> None:
    """Replace 1-based line `n` of a text file (None deletes it)."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[n - 1]
    else:
        lines[n - 1] = text
    path.write_text("\n".join(lines) + "\n")


def set_box(tree, vid: int, frame: int, n: int, box: str) -> tuple[Path, Path]:
    """Write `box` ('class cx cy w h') as line n of both label files, keeping the track id."""
    label, ftid = tree.label(vid, frame), tree.ftid(vid, frame)
    track = ftid.read_text().splitlines()[n - 1].split()[0]
    set_line(label, n, box)
    set_line(ftid, n, f"{track} {box}")
    return label, ftid


def counts_from_csv(videos, max_frames):
    """Per-class box totals, per-class busiest-frame box counts summed over videos, and label files,
    read straight from the CSV (the replica gives each video as many track ids per class as its
    busiest frame has boxes of that class)."""
    boxes, files = [0, 0, 0], 0
    peak = {v: [0, 0, 0] for v in videos}
    with open(REFERENCE_COUNTS, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, skipinitialspace=True):
            vid, frame = row["frame_name"].split("_frame_")
            if int(vid) in videos and int(frame) < max_frames:
                n = [int(row["sperm_count"]), int(row["cluster_count"]), int(row["small_or_pinhead_count"])]
                boxes = [a + b for a, b in zip(boxes, n)]
                peak[int(vid)] = [max(a, b) for a, b in zip(peak[int(vid)], n)]
                files += 1
    return boxes, [sum(p[c] for p in peak.values()) for c in range(3)], files


# ---------------------------------------------------------------- valid trees


def test_valid_small_tree_has_exact_summary(small_tree_pristine):
    tree = small_tree_pristine
    before = tree_digest(tree.root)
    report = validate(tree.root)
    assert report.problems == [] and report.ok and report.truncated == 0
    assert report.summary == tree.expected
    boxes, peak, files = counts_from_csv(SMALL_VIDEOS, SMALL_FRAMES)
    assert report.summary == {
        "videos": 2,
        "images": 2 * SMALL_FRAMES,
        "label_files": files,
        "frames_without_labels": 40 - files,
        "boxes": dict(zip(layout.CLASS_NAMES, boxes)),
        "tracks": dict(zip(layout.CLASS_NAMES, peak)),
        "clips": {"annotated_rest": 1, "other": 1},
        "participants": 2,
    }
    assert report.summary["boxes"] == {"sperm": 940, "cluster": 0, "small_or_pinhead": 0}
    assert tree_digest(tree.root) == before


def test_cli_json_prints_exact_keys_and_summary(small_tree_pristine, run_cli):
    rc, out, err = run_cli("validate", small_tree_pristine.root, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert list(summary) == SUMMARY_KEYS
    for key in ("boxes", "tracks"):
        assert list(summary[key]) == ["sperm", "cluster", "small_or_pinhead"]
    assert list(summary["clips"]) == ["annotated_rest", "other"]
    assert summary == small_tree_pristine.expected


def test_cli_table_output(small_tree_pristine, run_cli):
    rc, out, err = run_cli("validate", small_tree_pristine.root)
    assert rc == 0, err
    assert "boxes.sperm" in out and "940" in out and "clips.other" in out


def test_cli_deep_on_valid_tree(small_tree_pristine, run_cli):
    before = tree_digest(small_tree_pristine.root)
    assert validate(small_tree_pristine.root, deep=True).summary == small_tree_pristine.expected
    rc, out, err = run_cli("validate", small_tree_pristine.root, "--deep", "--json")
    assert rc == 0, err
    assert json.loads(out) == small_tree_pristine.expected
    assert tree_digest(small_tree_pristine.root) == before


@pytest.mark.parametrize("level", ["zip_root", "v4", "train"])
def test_cli_accepts_every_root_level(small_tree_pristine, run_cli, level):
    tree = small_tree_pristine
    path = {"zip_root": tree.root, "v4": tree.root / layout.TRAIN_DIR, "train": tree.train}[level]
    rc, out, err = run_cli("validate", path, "--json")
    assert rc == 0, err
    assert json.loads(out) == tree.expected


def test_empty_frame_runs_like_video_23_are_valid(gap_tree, run_cli):
    report = validate(gap_tree.root)
    assert report.problems == []
    # frames 823-972 and 1084-1107 of video 23 have an image and no label file
    assert report.summary["images"] == 1110
    assert report.summary["frames_without_labels"] == 150 + 24
    assert report.summary["label_files"] == 1110 - 174
    assert report.summary == gap_tree.expected
    video = locate(gap_tree.root).videos[23]
    assert set(video.frames()) - set(video.labelled_frames()) == set(range(823, 973)) | set(range(1084, 1108))
    rc, out, _ = run_cli("validate", gap_tree.root, "--json")
    assert rc == 0 and json.loads(out)["frames_without_labels"] == 174


def test_frame_whose_both_label_files_are_removed_is_valid(small_tree):
    small_tree.label(11, 5).unlink()
    small_tree.ftid(11, 5).unlink()
    report = validate(small_tree.root)
    assert report.problems == []
    assert report.summary["frames_without_labels"] == small_tree.expected["frames_without_labels"] + 1
    assert report.summary["label_files"] == small_tree.expected["label_files"] - 1
    assert report.summary["boxes"]["sperm"] == small_tree.expected["boxes"]["sperm"] - 43


def test_real_style_csv_header_with_spaces_and_quotes_is_valid(small_tree):
    # the real files have a space after every comma of the header, and quoted names with commas
    path = small_tree.csv(layout.SEMEN_CSV)
    lines = path.read_text(encoding="utf-8").splitlines()
    header = ", ".join(f'"{h}"' if "," in h else h for h in layout.CLINICAL_HEADERS[layout.SEMEN_CSV])
    path.write_text("\n".join([header, *lines[1:]]) + "\n", encoding="utf-8")
    report = validate(small_tree.root)
    assert report.problems == [] and report.summary == small_tree.expected


def test_nonexistent_root_exits_2(tmp_path, run_cli):
    rc, out, err = run_cli("validate", tmp_path / "nowhere")
    assert rc == 2 and out == ""
    assert "not a folder" in err
    (tmp_path / "empty").mkdir()
    rc, out, err = run_cli("validate", tmp_path / "empty")
    assert rc == 2 and out == ""
    assert "no 'Train/' folder found" in err


# ---------------------------------------------------------------- label lines


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.02", "0 0.5 0.5 0.02 0.03 0.9", "0"])
def test_labels_wrong_field_count(small_tree, run_cli, line):
    label = small_tree.label(11, 3)
    set_line(label, 2, line)
    found = len(line.split())
    check_bad(small_tree, run_cli, [(label, 2, f"expected 5 fields 'class cx cy w h', found {found}")])


@pytest.mark.parametrize("drop_track", [True, False])
def test_labels_ftid_wrong_field_count(small_tree, run_cli, drop_track):
    ftid = small_tree.ftid(23, 7)
    fields = ftid.read_text().splitlines()[2].split()
    set_line(ftid, 3, " ".join(fields[1:] if drop_track else fields + ["extra"]))
    found = 5 if drop_track else 7
    check_bad(small_tree, run_cli, [(ftid, 3, f"expected 6 fields 'track_id class cx cy w h', found {found}")])


@pytest.mark.parametrize("cls", ["3", "-1", "1.5"])
def test_class_outside_0_to_2(small_tree, run_cli, cls):
    label, ftid = set_box(small_tree, 11, 0, 1, f"{cls} 0.5 0.5 0.03 0.04")
    msg = f"class '{cls}' is not 0 (sperm), 1 (cluster) or 2 (small_or_pinhead)"
    check_bad(small_tree, run_cli, [(label, 1, msg), (ftid, 1, msg)])


@pytest.mark.parametrize("field,value", [("cx", "abc"), ("cy", "0,5"), ("h", "")])
def test_non_numeric_value(small_tree, run_cli, field, value):
    values = {"cx": "0.5", "cy": "0.5", "w": "0.03", "h": "0.04", field: value}
    if value == "":
        # an empty value shows as a missing field
        label = small_tree.label(11, 1)
        set_line(label, 3, "0 0.5 0.5 0.03 ")
        check_bad(small_tree, run_cli, [(label, 3, "expected 5 fields 'class cx cy w h', found 4")])
        return
    label, ftid = set_box(small_tree, 11, 1, 3, "0 {cx} {cy} {w} {h}".format(**values))
    msg = f"{field} '{value}' is not a number"
    check_bad(small_tree, run_cli, [(label, 3, msg), (ftid, 3, msg)])


@pytest.mark.parametrize("field,value", [("w", "nan"), ("cx", "inf"), ("h", "-inf"), ("cy", "NaN")])
def test_non_finite_value(small_tree, run_cli, field, value):
    values = {"cx": "0.5", "cy": "0.5", "w": "0.03", "h": "0.04", field: value}
    label, ftid = set_box(small_tree, 23, 2, 4, "1 {cx} {cy} {w} {h}".format(**values))
    msg = f"{field} '{value}' is not finite"
    check_bad(small_tree, run_cli, [(label, 4, msg), (ftid, 4, msg)])


@pytest.mark.parametrize("field,value", [("cx", "1.2"), ("cy", "-0.1"), ("w", "1.5"), ("h", "2")])
def test_coordinates_outside_unit_interval(small_tree, run_cli, field, value):
    values = {"cx": "0.5", "cy": "0.5", "w": "0.03", "h": "0.04", field: value}
    label, ftid = set_box(small_tree, 11, 19, 43, "2 {cx} {cy} {w} {h}".format(**values))
    msg = f"{field} {float(value):g} is outside [0, 1]"
    check_bad(small_tree, run_cli, [(label, 43, msg), (ftid, 43, msg)])


@pytest.mark.parametrize("w,h", [("0", "0.04"), ("0.03", "0"), ("0.0", "0.0")])
def test_zero_width_or_height(small_tree, run_cli, w, h):
    label, ftid = set_box(small_tree, 11, 4, 2, f"0 0.5 0.5 {w} {h}")
    msg = f"box width/height must be > 0, got w={float(w):g} h={float(h):g}"
    check_bad(small_tree, run_cli, [(label, 2, msg), (ftid, 2, msg)])


@pytest.mark.parametrize("field,value", [("w", "-0.03"), ("h", "-0.04")])
def test_negative_width_or_height(small_tree, run_cli, field, value):
    values = {"w": "0.03", "h": "0.04", field: value}
    label, ftid = set_box(small_tree, 11, 4, 2, "0 0.5 0.5 {w} {h}".format(**values))
    msg = f"{field} {value} is outside [0, 1]"
    check_bad(small_tree, run_cli, [(label, 2, msg), (ftid, 2, msg)])


def test_label_file_not_utf8(small_tree, run_cli):
    label = small_tree.label(23, 0)
    label.write_bytes(b"0 0.5 0.5 0.03 0.04\n\xff\xfe\n")
    check_bad(small_tree, run_cli, [(label, 0, "not UTF-8 text")])


# ---------------------------------------------------------------- labels/ vs labels_ftid/


def test_ftid_box_differs_from_labels(small_tree, run_cli):
    ftid = small_tree.ftid(11, 3)
    fields = ftid.read_text().splitlines()[3].split()
    fields[2] = "0.123456"  # cx
    set_line(ftid, 4, " ".join(fields))
    check_bad(small_tree, run_cli, [(ftid, 4, f"box '{' '.join(fields[1:])}' disagrees with 11_frame_3.txt line 4")])


def test_ftid_class_differs_from_labels(small_tree, run_cli):
    ftid = small_tree.ftid(23, 11)
    fields = ftid.read_text().splitlines()[0].split()
    fields[1] = "2"
    set_line(ftid, 1, " ".join(fields))
    check_bad(small_tree, run_cli, [(ftid, 1, "disagrees with 23_frame_11.txt line 1")])


def test_ftid_has_fewer_lines_than_labels(small_tree, run_cli):
    ftid = small_tree.ftid(11, 3)
    n = len(small_tree.label(11, 3).read_text().splitlines())
    set_line(ftid, n, None)
    check_bad(small_tree, run_cli, [(ftid, 0, f"{n - 1} boxes, but 11_frame_3.txt has {n}")])


def test_labels_has_an_extra_line(small_tree, run_cli):
    label, ftid = small_tree.label(23, 4), small_tree.ftid(23, 4)
    n = len(label.read_text().splitlines())
    label.write_text(label.read_text() + "0 0.5 0.5 0.03 0.04\n")
    check_bad(small_tree, run_cli, [(ftid, 0, f"{n} boxes, but 23_frame_4.txt has {n + 1}")])


def test_missing_ftid_twin(small_tree, run_cli):
    label = small_tree.label(11, 6)
    small_tree.ftid(11, 6).unlink()
    check_bad(small_tree, run_cli, [(label, 0, "no matching labels_ftid/11_frame_6_with_ftid.txt")])


def test_missing_labels_twin(small_tree, run_cli):
    ftid = small_tree.ftid(23, 6)
    small_tree.label(23, 6).unlink()
    check_bad(small_tree, run_cli, [(ftid, 0, "no matching labels/23_frame_6.txt")])


def test_label_file_without_its_image(small_tree, run_cli):
    small_tree.image(11, 3).unlink()
    check_bad(small_tree, run_cli, [(small_tree.label(11, 3), 0, "label file without its image images/11_frame_3.jpg")])


def test_file_names_carrying_another_video_id(small_tree, run_cli):
    shutil.copyfile(small_tree.image(11, 0), small_tree.video_dir(11) / "images" / "23_frame_0.jpg")
    check_bad(
        small_tree, run_cli, [(small_tree.video_dir(11) / "images", 0, "file names carry video id 23, folder is 11")]
    )


# ---------------------------------------------------------------- images


def _jpeg(width=640, height=480) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize(
    "damage,message",
    [
        ("garbage", "not a JPEG image (no start-of-image marker)"),
        ("truncated", "JPEG is truncated (no end-of-image marker)"),
        ("small", "image is 320x240, expected 640x480"),
        ("empty", "not a JPEG image"),
    ],
)
def test_unreadable_image(small_tree, run_cli, damage, message, deep):
    image = small_tree.image(23, 9)
    data = {"garbage": b"\x00not a jpeg\x00" * 64, "truncated": _jpeg()[:3000], "small": _jpeg(320, 240), "empty": b""}[
        damage
    ]
    image.write_bytes(data)
    check_bad(small_tree, run_cli, [(image, 0, message)], deep=deep)


def test_deep_finds_an_image_that_only_looks_like_a_jpeg(small_tree, run_cli):
    # start/end markers and a 640x480 frame header, but no scan data: only decoding tells
    image = small_tree.image(11, 12)
    data = image.read_bytes()
    image.write_bytes(data[: data.find(b"\xff\xda")] + b"\xff\xd9")
    assert validate(small_tree.root).problems == []
    check_bad(small_tree, run_cli, [(image, 0, "cannot be decoded as an image")], deep=True)


# ---------------------------------------------------------------- videos and clips


@pytest.mark.parametrize("which", ["annotated", "clip_rest", "clip_other"])
@pytest.mark.parametrize("damage", ["half", "garbage"])
def test_unreadable_mp4(small_tree, run_cli, which, damage):
    path = {
        "annotated": small_tree.mp4(11),
        "clip_rest": small_tree.clip("11_30_60.mp4"),
        "clip_other": small_tree.clip("25_0_30.mp4"),
    }[which]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "half" else b"\x00\x01garbage" * 300)
    problem = (path, 0, "cannot be opened as a video (truncated or not an mp4)")
    if which == "annotated":  # labelled videos are strict whatever on_bad_clip says
        check_bad(small_tree, run_cli, [problem], on_bad_clip="skip")
        return
    check_bad(small_tree, run_cli, [problem], on_bad_clip="fail")
    # skip (the default): the clip's problem, not the dataset's; the round goes on without it.
    report = validate(small_tree.root)
    assert report.ok and [(p.path, p.line) for p in report.bad_clips] == [(path, 0)]
    assert report.summary["bad_clips"] == {path.stem: report.bad_clips[0].message}
    assert problem[2] in report.bad_clips[0].message
    rc, out, err = run_cli("validate", small_tree.root)
    assert rc == 0 and f"warning: {path}:0: cannot be opened" in err


def test_missing_annotated_mp4(small_tree, run_cli):
    small_tree.mp4(23).unlink()
    check_bad(small_tree, run_cli, [(small_tree.mp4(23), 0, "missing annotated video")])


@pytest.mark.parametrize("bad_name", ["11_thirty_60.mp4", "11_60_30.mp4", "11_30_30.mp4", "11-30-60.mp4"])
def test_unparseable_clip_name(small_tree, run_cli, bad_name):
    clip = small_tree.clip("11_30_60.mp4")
    bad = clip.with_name(bad_name)
    clip.rename(bad)
    report = check_bad(
        small_tree,
        run_cli,
        [(bad, 0, f"clip name '{bad_name}' is not <id>_<start>_<stop>.mp4 with start < stop")],
        on_bad_clip="fail",
    )
    assert [p.path for p in validate(small_tree.root).bad_clips] == [bad]  # skip: left out, reported
    assert report.summary["clips"] == {"annotated_rest": 0, "other": 1}


# ---------------------------------------------------------------- clinical CSVs


def _drop_column(path: Path, column: str) -> None:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    i = rows[0].index(column)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([r[:i] + r[i + 1 :] for r in rows])


def test_csv_missing_column(small_tree, run_cli):
    path = small_tree.csv(layout.SEMEN_CSV)
    _drop_column(path, layout.PROGRESSIVE_COL)
    check_bad(small_tree, run_cli, [(path, 1, "missing column 'Progressive motility (%)'")])


@pytest.mark.parametrize(
    "csv_name,old,new",
    [
        (layout.PARTICIPANT_CSV, "Body mass index (kg/m²)", "Body mass index (kg/m2)"),
        (layout.SEMEN_CSV, "Sperm concentration (x10⁶/mL)", "Sperm concentration (x10^6/mL)"),
        (
            layout.FA_SERUM_CSV,
            "Serum C20:5 n-3  (eicosapentaenoic acid, EPA)",
            "Serum C20:5 n-3 (eicosapentaenoic acid, EPA)",
        ),
    ],
)
def test_csv_renamed_column(small_tree, run_cli, csv_name, old, new):
    path = small_tree.csv(csv_name)
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    check_bad(small_tree, run_cli, [(path, 1, f"missing column '{old}' (found unexpected '{new}' instead?)")])


def test_csv_not_utf8(small_tree, run_cli):
    path = small_tree.csv(layout.PARTICIPANT_CSV)
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    check_bad(small_tree, run_cli, [(path, 0, "not UTF-8")])


def test_csv_missing_file(small_tree, run_cli):
    path = small_tree.csv(layout.HORMONES_CSV)
    path.unlink()
    check_bad(small_tree, run_cli, [(path, 0, "missing clinical CSV")])


def test_duplicate_participant_ids(small_tree, run_cli):
    path = small_tree.csv(layout.PARTICIPANT_CSV)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("11,")
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    check_bad(small_tree, run_cli, [(path, 4, "duplicate participant id 11 (first on line 2)")])


def test_csv_row_with_wrong_field_count_and_bad_id(small_tree, run_cli):
    path = small_tree.csv(layout.PARTICIPANT_CSV)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] += ",surplus"
    lines[2] = "twenty-three" + lines[2][2:]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check_bad(
        small_tree,
        run_cli,
        [(path, 2, "expected 4 fields, found 5"), (path, 3, "ID 'twenty-three' is not a participant number")],
    )


# ---------------------------------------------------------------- many problems, the cap


def test_problems_in_different_files_are_all_reported(small_tree, run_cli):
    label, ftid = set_box(small_tree, 11, 2, 5, "4 0.5 0.5 0.03 0.04")
    image = small_tree.image(23, 15)
    image.write_bytes(b"garbage")
    clip = small_tree.clip("25_0_30.mp4")
    clip.write_bytes(clip.read_bytes()[:100])
    small_tree.ftid(23, 1).unlink()
    semen = small_tree.csv(layout.SEMEN_CSV)
    semen.write_text(semen.read_text(encoding="utf-8").replace("Immotile sperm (%)", "Immotile (%)"), encoding="utf-8")
    cls = "class '4' is not 0"
    report = check_bad(
        small_tree,
        run_cli,
        [
            (label, 5, cls),
            (ftid, 5, cls),
            (image, 0, "not a JPEG image"),
            (small_tree.label(23, 1), 0, "no matching labels_ftid/23_frame_1_with_ftid.txt"),
            (clip, 0, "cannot be opened as a video"),
            (semen, 1, "missing column 'Immotile sperm (%)' (found unexpected 'Immotile (%)' instead?)"),
        ],
        on_bad_clip="fail",
    )
    assert len(report.problems) == 6
    # skip: the same five problems of labelled data and CSVs, the clip reported apart.
    report = validate(small_tree.root)
    assert len(report.problems) == 5 and [p.path for p in report.bad_clips] == [clip]


def test_max_problems_caps_the_report(small_tree, run_cli):
    label = small_tree.label(11, 8)
    for n in range(1, 8):
        set_line(label, n, "9 0.5 0.5 0.03 0.04")  # 7 bad lines in labels/ only
    report = validate(small_tree.root, max_problems=3)
    assert [(p.path, p.line) for p in report.problems] == [(label, 1), (label, 2), (label, 3)]
    assert report.truncated == 4
    full = validate(small_tree.root)
    assert [p.line for p in full.problems] == [1, 2, 3, 4, 5, 6, 7] and full.truncated == 0

    before = tree_digest(small_tree.root)
    rc, out, err = run_cli("validate", small_tree.root, "--max-problems", "3")
    assert rc == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [str(p) for p in report.problems] + ["... and 4 more problem(s) not shown"]
    assert tree_digest(small_tree.root) == before

    rc, out, err = run_cli("validate", small_tree.root)
    assert rc == 2 and out == "" and "more problem" not in err
    assert [ln for ln in err.splitlines() if ln.strip()] == [str(p) for p in full.problems]


def test_validate_on_a_dataset_object_restricted_to_one_video(small_tree_pristine):
    ds = locate(small_tree_pristine.root)
    only = replace(ds, videos={23: ds.videos[23]}, all_clips=[], clip_dirs={"annotated_rest": None, "other": None})
    report = validate(small_tree_pristine.root, dataset=only)
    boxes, _, files = counts_from_csv((23,), SMALL_FRAMES)
    assert report.problems == []
    assert report.summary["videos"] == 1 and report.summary["label_files"] == files
    assert report.summary["boxes"] == dict(zip(layout.CLASS_NAMES, boxes))
    assert report.summary["clips"] == {"annotated_rest": 0, "other": 0}
