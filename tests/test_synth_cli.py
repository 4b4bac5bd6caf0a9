"""`visem-pl synth` end to end: its own counts equal what `visem-pl validate` finds, and the
contact sheet draws the boxes in the paper's colours."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from visem_pl.tasks.dataset import layout


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(
        "synth:\n  seed: 3\n  videos: [11, 23, 52]\n  frames_per_video: 30\n"
        "  rest_clips_per_video: 1\n  other_videos: 2\n  frames_per_clip: 15\n"
    )
    return path


def test_synth_counts_equal_validate_summary(run_cli, params_file, tmp_path):
    out = tmp_path / "twin"
    rc, stdout, stderr = run_cli("synth", out, "--params", params_file, "--json")
    assert rc == 0, stderr
    generated = json.loads(stdout)
    rc, stdout, stderr = run_cli("validate", out, "--json")
    assert rc == 0, stderr
    assert json.loads(stdout) == generated
    assert generated["videos"] == 3 and generated["clips"] == {"annotated_rest": 3, "other": 2}
    assert generated["images"] == 90 and generated["participants"] == 3
    # A second synth into the same folder is refused, naming the folder, and changes nothing.
    before = sorted(p.name for p in out.iterdir())
    rc, _, stderr = run_cli("synth", out, "--params", params_file)
    assert rc == 2 and str(out) in stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_synth_rejects_unknown_params_key(run_cli, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("synth:\n  seed: 1\n  frames: 10\n")
    rc, stdout, stderr = run_cli("synth", tmp_path / "x", "--params", bad)
    assert rc == 2 and stdout == ""
    assert "unknown key(s) ['frames']" in stderr
    assert not (tmp_path / "x").exists()


def test_contact_sheet_draws_paper_colours(run_cli, params_file, tmp_path):
    out = tmp_path / "twin"
    assert run_cli("synth", out, "--params", params_file)[0] == 0
    png = tmp_path / "sheet.png"
    rc, _, stderr = run_cli("contact-sheet", out, png, "--frames", "5")
    assert rc == 0, stderr
    sheet = cv2.imread(str(png))
    assert sheet.shape == (2 * layout.IMAGE_HEIGHT, 3 * layout.IMAGE_WIDTH, 3)
    for bgr in layout.CLASS_COLOURS_BGR[:1]:  # every sampled frame of these videos has sperm
        assert np.all(sheet == np.array(bgr, np.uint8), axis=2).sum() > 100
