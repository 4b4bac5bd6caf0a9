"""Where each round's data, model and metrics live (the same paths `dvc.yaml` declares)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREPARED = Path("data/prepared")
MODELS = Path("models")
ROUNDS = Path("data/rounds")
METRICS = Path("metrics")
# Where experts put reviewed labels for real data (the simulated expert writes the same layout).
REVIEWED = "reviewed"
REVIEW_FOLDERS = Path("review")


@dataclass(frozen=True)
class RoundPaths:
    n: int

    @property
    def model_dir(self) -> Path:
        return MODELS / f"round-{self.n}"

    @property
    def weights(self) -> Path:
        return self.model_dir / "weights.pt"

    @property
    def data(self) -> Path:
        return ROUNDS / f"round-{self.n}"

    @property
    def predictions(self) -> Path:
        return self.data / "predictions"

    @property
    def pseudo(self) -> Path:
        return self.data / "pseudo"

    @property
    def queue(self) -> Path:
        return self.pseudo / "review_queue.csv"

    @property
    def queue_csv(self) -> Path:
        """The prioritised review queue (one row per frame) that `filter` writes."""
        return self.pseudo / "queue.csv"

    @property
    def review_folder(self) -> Path:
        """Where experts' answers of this round live on real data (git-tracked, a `QueueStore`)."""
        return REVIEW_FOLDERS / f"round-{self.n}"

    @property
    def reviewed(self) -> Path:
        return self.data / REVIEWED

    @property
    def merged(self) -> Path:
        return self.data / "merged"

    @property
    def metrics(self) -> Path:
        return METRICS / "rounds" / f"round-{self.n}"

    def training_frames(self) -> Path:
        """The frames this round trains on: labelled frames for round 0, else round N-1's merged set."""
        if self.n == 0:
            return PREPARED / "frames.csv"
        return RoundPaths(self.n - 1).merged / "frames.csv"

    def init_weights(self) -> Path | None:
        return None if self.n == 0 else RoundPaths(self.n - 1).weights
