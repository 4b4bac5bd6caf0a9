"""Progress of the long steps (tasks/workspace/progress.py): a rich bar in a terminal, plain lines in a
log (DVC, Prefect, CI), never on stdout, and the stages' own output as DVC captures it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from visem_pl.tasks.workspace.progress import INTERVAL_ENV, default_interval, progress

REPO = Path(__file__).resolve().parents[1]
CONTROL = ("\r", "\x1b")


def plain(text: str) -> bool:
    return not any(c in text for c in CONTROL)


def test_plain_lines_in_a_log():
    out = io.StringIO()  # not a terminal, like a pipe to DVC
    with progress("infer", 5, "clips", completed=1, stream=out, interval=0) as bar:
        for _ in range(4):
            bar.advance(note="boxes 7")
    text = out.getvalue()
    assert plain(text), repr(text)
    lines = text.splitlines()
    assert lines[0] == "infer: 4 clips to do (1 of 5 already done)"
    assert [line.split(",")[0] for line in lines[1:-1]] == [
        "infer: 2/5 clips (40%)",
        "infer: 3/5 clips (60%)",
        "infer: 4/5 clips (80%)",
    ]
    assert all(" elapsed, about " in line and line.endswith(" left, boxes 7") for line in lines[1:-1])
    assert lines[-1].startswith("infer: 5/5 clips done in ") and lines[-1].endswith(" s, boxes 7")


def test_plain_lines_are_periodic_and_name_a_stop():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with progress("merge", 1000, stream=out, interval=3600) as bar:
            for _ in range(400):
                bar.advance()
            raise RuntimeError("decoding failed")
    # An hour between lines: only the first and the last, which says where it stopped.
    assert out.getvalue().splitlines() == [
        "merge: 1000 clips to do",
        "merge: stopped at 400/1000 clips (40%) after 0 s",
    ]


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert default_interval() == 10.0
    monkeypatch.setenv(INTERVAL_ENV, "0")
    out = io.StringIO()
    with progress("track", 3, stream=out) as bar:
        for _ in range(3):
            bar.advance()
    assert len(out.getvalue().splitlines()) == 4  # first, 1/3, 2/3, done
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        default_interval()


def test_disabled_writes_nothing():
    out = io.StringIO()
    with progress("synth", 3, stream=out, enabled=False, interval=0) as bar:
        bar.advance(3)
    assert out.getvalue() == "" and bar.completed == 3


def test_a_terminal_gets_a_rich_bar(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")  # a dumb terminal would get no live bar
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    received = bytearray()

    def read():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with open(slave, "w", encoding="utf-8", closefd=True) as tty:
        assert tty.isatty()
        with progress("infer", 3, "clips", stream=tty, interval=0) as bar:
            for _ in range(3):
                time.sleep(0.15)
                bar.advance()
    reader.join(timeout=5)
    os.close(master)
    text = received.decode("utf-8", errors="replace")
    assert "\x1b" in text  # drawn and redrawn in place, not logged line by line
    assert "3/3" in text and "infer" in text and "clips" in text
    assert "clips to do" not in text  # none of the plain lines


def test_synth_stage_as_dvc_runs_it(run_cli, tmp_path, monkeypatch):
    """`visem-pl synth OUT --params P --json` with stdout and stderr piped: progress lines on stderr, plain,
    and stdout the JSON alone."""
    monkeypatch.setenv(INTERVAL_ENV, "0")
    params = tmp_path / "params.yaml"
    params.write_text(
        "synth:\n  seed: 0\n  videos: [11, 23]\n  frames_per_video: 12\n  rest_clips_per_video: 1\n"
        "  other_videos: 1\n  frames_per_clip: 9\n  workers: 1\n"
    )
    rc, stdout, stderr = run_cli("synth", tmp_path / "twin", "--params", params, "--json")
    assert rc == 0, stderr
    assert json.loads(stdout)["videos"] == 2
    assert plain(stderr), repr(stderr)
    lines = [line for line in stderr.splitlines() if line.startswith("synth: ")]
    jobs = 2 + 2 + 1  # videos, their rest clips, one other video's clip
    assert lines[0] == f"synth: {jobs} videos and clips to do"
    assert [line.split(" (")[0] for line in lines[1:-1]] == [
        f"synth: {i}/{jobs} videos and clips" for i in range(1, jobs)
    ]
    assert lines[-1].startswith(f"synth: {jobs}/{jobs} videos and clips done in ")


TRAIN = """
import sys
from pathlib import Path

import pandas as pd

from visem_pl.tasks.synth import SynthConfig, synthesize
from visem_pl.tasks.training.train import TrainConfig, train

synthesize(Path("twin"), SynthConfig(seed=0, videos=(11,), frames_per_video=4, rest_clips_per_video=0,
                                       other_videos=0, workers=1), progress=False)
video = next(Path("twin").glob("*/Train/11"))
images = sorted((video / "images").glob("*.jpg"))
frames = pd.DataFrame({"image": [str(p) for p in images],
                       "label": [str(video / "labels" / f"{p.stem}.txt") for p in images]})
cfg = TrainConfig(model=sys.argv[1], epochs=2, batch=8, crop_size=64, crops=16, device="cpu", workers=0,
                  warmup_epochs=0.0, val_crops=8)
print(train(frames, Path("model"), cfg)["iterations"])
"""


def test_training_logs_one_plain_line_per_epoch(tmp_path):
    """Ultralytics' own bars redraw with '\\r' and escape codes on any stdout when it is verbose: in a log,
    our epoch lines only, and stdout stays free of them."""
    env = dict(os.environ, YOLO_VERBOSE="true", PYTHONIOENCODING="utf-8")
    env.pop(INTERVAL_ENV, None)  # one line per epoch whatever the interval
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, str(REPO / "models" / "yolov8n.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert plain(proc.stdout) and plain(proc.stderr), (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("train: ")]
    assert lines[0] == "train: 2 epochs to do"
    assert lines[1].startswith("train: 1/2 epochs (50%), ") and ", box loss " in lines[1]
    assert lines[2].startswith("train: 2/2 epochs done in ") and ", box loss " in lines[2]
    assert len(lines) == 3
    assert "train:" not in proc.stdout
