"""Where a project's data, models, metrics and review folders live: one place, rooted at the workspace.

`dvc.yaml` declares the same paths relative to the project folder; every step reaches them
through a `Workspace` (the folder and its params.yaml) and its `RoundPaths`, never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visem_pl.tasks.workspace.errors import ConfigError
from visem_pl.tasks.workspace.params import build, load_params

PARAMS_FILE = "params.yaml"


def portable(path: Path | str) -> str:
    """Relative to the working directory when inside it, so tables written there are the same in every clone."""
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Workspace:
    """A project folder: `root` (relative paths stay relative, as DVC runs stages in it) and its params."""

    root: Path = Path(".")
    params_file: Path | str = PARAMS_FILE

    @property
    def params_path(self) -> Path:
        p = Path(self.params_file)
        return p if p.is_absolute() else self.root / p

    prepared = property(lambda self: self.root / "data" / "prepared")
    rounds_dir = property(lambda self: self.root / "data" / "rounds")
    models = property(lambda self: self.root / "models")
    metrics = property(lambda self: self.root / "metrics")
    # Plot data (CSV, git-tracked like the metrics): fitness and mAP per class by round (`report --plot`), and
    # the rounds' own curves (RoundPaths). Not under metrics/rounds/, which `report` depends on.
    plots = property(lambda self: self.root / "metrics" / "plots")
    # The offline HTML round report (`visem-pl report --html`, `make demo`, the Prefect round); git-ignored.
    report_html = property(lambda self: self.root / "reports" / "round-report.html")
    # Experts' review folders (git-tracked queue stores), one per round.
    review = property(lambda self: self.root / "review")
    exports_cache = property(lambda self: self.root / ".cache" / "exports")
    ultralytics_config = property(lambda self: self.root / ".cache" / "ultralytics")
    track_trials = property(lambda self: self.root / ".cache" / "track-trials")
    lock_file = property(lambda self: self.root / ".visem-pl" / "round.lock")

    def round(self, n: int) -> RoundPaths:
        return RoundPaths(self, n)

    def params(self) -> dict:
        try:
            return load_params(self.params_path)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None

    def section(self, name: str, cls, drop: tuple[str, ...] = ()):
        """A stage's config dataclass from its params.yaml section; ConfigError names the file and key."""
        try:
            section = {k: v for k, v in (self.params().get(name) or {}).items() if k not in drop}
            return build(cls, section, f"{self.params_path} {name}")
        except ConfigError:
            raise
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError([str(exc)]) from None

    def data_root(self) -> Path:
        """params.yaml `data.root`, relative to the workspace unless absolute."""
        try:
            root = Path(self.params()["data"]["root"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError([f"{self.params_path}: data.root is required ({exc})"]) from None
        return root if root.is_absolute() else self.root / root

    def on_bad_clip(self) -> str:
        """params.yaml `data.on_bad_clip` (default skip): what a clip that cannot be decoded does to the round."""
        from visem_pl.tasks.dataset.validate import ON_BAD_CLIP

        value = (self.params().get("data") or {}).get("on_bad_clip", "skip")
        if value not in ON_BAD_CLIP:
            choices = ", ".join(ON_BAD_CLIP)
            raise ConfigError([f"{self.params_path} data.on_bad_clip: must be one of {choices}, not {value!r}"])
        return value

    def clips(self) -> list:
        """Every unlabelled clip of the dataset `data.root` names."""
        from visem_pl.tasks.dataset.reader import locate

        return locate(self.data_root()).clips()

    def dataset_id(self) -> str:
        """The id of the dataset `data.root` names now (tasks/dataset/identity.py)."""
        from visem_pl.tasks.dataset.identity import dataset_id
        from visem_pl.tasks.dataset.reader import locate

        return dataset_id(locate(self.data_root()))

    def computed_from(self, n: int) -> dict:
        """What a metric of round n is computed from: the round's weights and the dataset. Every metric
        file records it, and `visem-pl report` marks an entry stale when either changed since."""
        from visem_pl.tasks.workspace.io import file_sha256

        weights = self.round(n).weights
        return {"weights_sha256": file_sha256(weights) if weights.exists() else None, "dataset": self.dataset_id()}

    def validation_videos(self) -> list:
        """The annotated videos of the validation split (params.yaml `split`), the labelled ones the
        tracks are scored on where the dataset has no synthetic truth."""
        from visem_pl.tasks.dataset.reader import locate

        split = self.params().get("split") or {}
        return locate(self.data_root()).split(tuple(split.get("val_ids") or ()), split.get("train_ids"))[1]

    def validation_clips(self) -> list:
        """The validation videos' mp4s as clips (named by video id), for inference and tracking."""
        from visem_pl.tasks.dataset.reader import Clip

        return [Clip(v.mp4, v.id, 0, 30, "validation") for v in self.validation_videos()]


@dataclass(frozen=True)
class RoundPaths:
    """Round n's model, data, metrics and review folder in a workspace."""

    ws: Workspace
    n: int

    model_dir = property(lambda self: self.ws.models / f"round-{self.n}")
    weights = property(lambda self: self.model_dir / "weights.pt")
    data = property(lambda self: self.ws.rounds_dir / f"round-{self.n}")
    predictions = property(lambda self: self.data / "predictions")
    tracks = property(lambda self: self.data / "tracks")
    # The labelled validation videos, run and tracked like the clips to score tracking on real labels.
    validation_predictions = property(lambda self: self.data / "validation" / "predictions")
    validation_tracks = property(lambda self: self.data / "validation" / "tracks")
    # Each clip's motility window (`motility.window_s`) run at every frame, and its tracks: CASA's sampling rate.
    motility_predictions = property(lambda self: self.data / "motility" / "predictions")
    motility_tracks = property(lambda self: self.data / "motility" / "tracks")
    pseudo = property(lambda self: self.data / "pseudo")
    boxes = property(lambda self: self.pseudo / "boxes.parquet")
    # The prioritised review queue (one row per frame) that `filter` writes.
    queue_csv = property(lambda self: self.pseudo / "queue.csv")
    # Where experts answer this round's queue (git-tracked, a `QueueStore`).
    review_folder = property(lambda self: self.ws.review / f"round-{self.n}")
    reviewed = property(lambda self: self.data / "reviewed")
    merged = property(lambda self: self.data / "merged")
    metrics = property(lambda self: self.ws.metrics / "rounds" / f"round-{self.n}")
    # Small CSV files for `dvc plots` (dvc.yaml's top-level plots take a folder, one file per round) and the
    # HTML report: the validation PR curve per class (evaluate), the boxes' confidence histogram (filter).
    pr_curve = property(lambda self: self.ws.plots / "pr_curve" / f"round-{self.n}.csv")
    confidence_histogram = property(lambda self: self.ws.plots / "confidence" / f"round-{self.n}.csv")

    @property
    def previous(self) -> RoundPaths | None:
        return None if self.n == 0 else RoundPaths(self.ws, self.n - 1)

    def training_frames(self) -> Path:
        """The frames this round trains on: labelled frames for round 0, else round N-1's merged set."""
        return self.ws.prepared / "frames.csv" if self.previous is None else self.previous.merged / "frames.csv"

    def init_weights(self) -> Path | None:
        return None if self.previous is None else self.previous.weights
