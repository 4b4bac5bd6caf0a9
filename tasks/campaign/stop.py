"""When a pseudo-labelling campaign stops: the rule `params.yaml` `campaign:` sets.

After each round the campaign looks at the per-round report (`tasks.report.collect`) and stops
at the first of: `max_rounds` rounds done; validation fitness gained less than
`min_fitness_gain` over the previous round; fewer than `min_new_accepted` new accepted
pseudo-label boxes (this round's accepted boxes minus the previous round's).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CampaignConfig:
    max_rounds: int = 3  # rounds in all, counting round 0
    min_fitness_gain: float = 0.005
    min_new_accepted: int = 1

    def __post_init__(self):
        if int(self.max_rounds) < 1:
            raise ValueError(f"campaign.max_rounds must be >= 1, got {self.max_rounds!r}")
        if int(self.min_new_accepted) < 0:
            raise ValueError(f"campaign.min_new_accepted must be >= 0, got {self.min_new_accepted!r}")


def stop_reason(rounds: list[dict], cfg: CampaignConfig) -> str | None:
    """Why to stop after the last of `rounds` (report rows, by round), or None to go on."""
    if not rounds:
        return None
    last = rounds[-1]
    n = int(last["round"])
    if n + 1 >= cfg.max_rounds:
        return f"reached campaign.max_rounds = {cfg.max_rounds} (rounds 0..{n} done)"
    if len(rounds) >= 2:
        prev = rounds[-2]
        if last.get("fitness") is not None and prev.get("fitness") is not None:
            gain = last["fitness"] - prev["fitness"]
            if gain < cfg.min_fitness_gain:
                return (
                    f"validation fitness gained {gain:+.4f} in round {n} ({prev['fitness']:.4f} -> "
                    f"{last['fitness']:.4f}), below campaign.min_fitness_gain = {cfg.min_fitness_gain}"
                )
    new = (last.get("accepted_boxes") or 0) - ((rounds[-2].get("accepted_boxes") or 0) if len(rounds) >= 2 else 0)
    if new < cfg.min_new_accepted:
        return (
            f"round {n} accepted {new} new pseudo-label boxes, below campaign.min_new_accepted = {cfg.min_new_accepted}"
        )
    return None
