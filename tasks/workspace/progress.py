"""Progress of the long steps (synthesize, infer, track, merge, train): the one place it is decided.

In an interactive terminal a rich bar; anywhere else (DVC's and Prefect's logs, CI, a pipe) plain
lines, because a redrawn bar there turns into carriage returns and escape codes. Both go to stderr:
stdout carries the JSON some commands print. A plain line comes at most every
`VISEM_PL_PROGRESS_INTERVAL` seconds (default 10; 0 = on every step), with a first and a last line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

INTERVAL_ENV = "VISEM_PL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def default_interval() -> float:
    """Seconds between plain lines: `VISEM_PL_PROGRESS_INTERVAL`, else DEFAULT_INTERVAL."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise ValueError(f"{INTERVAL_ENV} must be a number of seconds >= 0, not {raw!r}")
    return value


def duration(seconds: float) -> str:
    """`35 s`, `4 min 05 s`, `2 h 07 min`: readable in a log, no clock that looks like a time of day."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """What a long step reports to: `advance(n, note=...)`; `note` (e.g. the latest loss) shows beside the count."""

    def __init__(self, description: str, total: int, unit: str, completed: int) -> None:
        self.description, self.total, self.unit = description, int(total), unit
        self.completed = self._start = int(completed)
        self.note = ""
        self.started = time.monotonic()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.completed += n
        if note is not None:
            self.note = note

    def _open(self) -> None:
        pass

    def _close(self, failed: bool) -> None:
        pass


class _Plain(Progress):
    def __init__(self, description, total, unit, completed, stream: IO[str], interval: float) -> None:
        super().__init__(description, total, unit, completed)
        self.stream, self.interval = stream, interval
        self.last = self.started

    def _write(self, text: str) -> None:
        self.stream.write(f"{self.description}: {text}\n")
        self.stream.flush()

    def _count(self) -> str:
        pct = f" ({100 * self.completed // self.total}%)" if self.total else ""
        return f"{self.completed}/{self.total} {self.unit}{pct}"

    def _open(self) -> None:
        done = f" ({self._start} of {self.total} already done)" if self._start else ""
        self._write(f"{self.total - self._start} {self.unit} to do{done}")

    def advance(self, n: int = 1, note: str | None = None) -> None:
        super().advance(n, note)
        now = time.monotonic()
        if self.completed >= self.total or now - self.last < self.interval:
            return  # the last step is the final line's
        self.last = now
        elapsed = now - self.started
        line = f"{self._count()}, {duration(elapsed)} elapsed"
        done_here = self.completed - self._start
        if done_here > 0:
            line += f", about {duration(elapsed / done_here * (self.total - self.completed))} left"
        self._write(line + (f", {self.note}" if self.note else ""))

    def _close(self, failed: bool) -> None:
        elapsed = duration(time.monotonic() - self.started)
        note = f", {self.note}" if self.note else ""
        if failed:
            self._write(f"stopped at {self._count()} after {elapsed}")
        else:
            self._write(f"{self.completed}/{self.total} {self.unit} done in {elapsed}{note}")


class _Bar(Progress):
    def __init__(self, description, total, unit, completed, stream: IO[str]) -> None:
        super().__init__(description, total, unit, completed)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(file=stream),
            transient=False,
            redirect_stdout=False,  # stdout carries a command's JSON, never the bar's console
        )
        self.task = self.bar.add_task(description, total=total, completed=completed, note="")

    def _open(self) -> None:
        self.bar.start()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        super().advance(n, note)
        self.bar.update(self.task, advance=n, note=self.note)

    def _close(self, failed: bool) -> None:
        self.bar.stop()


@contextmanager
def progress(
    description: str,
    total: int,
    unit: str = "clips",
    *,
    completed: int = 0,
    enabled: bool = True,
    stream: IO[str] | None = None,
    interval: float | None = None,
) -> Iterator[Progress]:
    """Report a step of `total` `unit` (`completed` of them already done) while the block runs.

    `stream` (default: stderr at call time) decides: a terminal gets a bar, anything else plain lines
    every `interval` seconds (default: `default_interval()`). `enabled=False`: silent, same object.
    """
    if not enabled:
        yield Progress(description, total, unit, completed)
        return
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        reporter: Progress = _Bar(description, total, unit, completed, stream)
    else:
        every = default_interval() if interval is None else interval
        reporter = _Plain(description, total, unit, completed, stream, every)
    reporter._open()
    failed = True
    try:
        yield reporter
        failed = False
    finally:
        reporter._close(failed)


def is_terminal(stream: IO[str]) -> bool:
    """Whether `stream` is an interactive terminal. Asked of the stream itself, not of rich: FORCE_COLOR
    (set by many CI systems) makes rich draw into a log."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
