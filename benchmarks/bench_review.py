"""Is the review queue's order worth an expert's time? Round 1 after reviewing the prioritised queue,
the highest-uncertainty frames, or frames drawn at random from the review band, at the same budget.

Protocol (fixed on 2026-12-05 before the priority was tuned against it; docs/review.md):

- Data: the demo's synthetic twin, its split and scarce labels (bench ssl's `twin_and_split`: 64
  labelled frames), fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) on the fixed validation videos' frames.
- Round 0, one for every arm and seed: bench ssl's labelled sequence of seed 0 (chunk k = one call of
  params.yaml's `train`, from chunk k-1's weights, training seed k), at most `--max-chunks` (default 4:
  640 iterations, the demo's `train.round0_epochs`) and `--patience` chunks without gain; round 0 = its
  best chunk, then its inference and tracks. Held fixed because the question is what an expert should
  look at given a model (and a round 0 per seed would triple the benchmark's hours on a 2-core CPU).
- Seeds 0..N-1 (default 3): seed s sets round 1's training seed (1000 s + best + 1: crops cut, training
  order), the simulated expert's seed (`review.seed`: which missed cells it adds) and the random arm's
  draw (`review.order_seed`); the same in every arm of a seed.
- Arms, each through the loop's own filter, simulated expert (params.yaml `review`: it keeps, fixes,
  deletes and adds boxes from the synthetic truth), merge, and one chunk of round-1 training from round 0;
  only `review.order` differs:
  `priority` (params.yaml's weights, spread round-robin over clips: what the loop ships),
  `uncertainty` (the frames whose most uncertain box is nearest its band's middle, alone),
  `random` (a draw from the review band, `review.order_seed` = the seed).
  Budget: params.yaml `review.max_items` frames (30 in the demo) in every arm.
- Reported per arm and seed: round-1 validation fitness; the simulated expert's work per reviewed
  frame (boxes kept, fixed, deleted, added; corrections = fixed + deleted + added); the labels round 1
  is taught from the clips (P/R against the truth, as bench ssl). Goal (issue 17): mean fitness of
  priority >= random + 0.01, and corrections per reviewed frame of priority >= 1.5 x random.

Everything lands under `--workdir` (default .cache/bench-review) and resumes: a finished chunk or arm
is never trained again (delete the folder to start over).

    visem-pl bench review [--seeds N] [--json]      # or .venv/bin/python benchmarks/bench_review.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_ssl as ssl  # noqa: E402  (sets up the import path and Ultralytics' offline settings)

from visem_pl.tasks.workspace.io import write_json  # noqa: E402
from visem_pl.tasks.workspace.paths import Workspace  # noqa: E402

ARMS = ("priority", "uncertainty", "random")
WORK = ("kept", "fixed", "deleted", "added")
TAUGHT = ("taught_precision", "taught_recall")


def arm_change(arm: str, seed: int) -> dict:
    """The change to params.yaml an arm of a seed makes: its order (and the seed's draw and expert)."""
    return {"review": {"order": arm, "seed": seed, **({"order_seed": seed} if arm == "random" else {})}}


def run(args) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    project = Workspace(REPO if args.params is None else Path(args.params).parent,
                        args.params or REPO / "params.yaml").params()  # fmt: skip
    params, base = ssl.twin_and_split(work, project)
    arms = {arm: {"fitness": [], "corrections_per_frame": [], "frames": [], **{f"{k}_per_frame": [] for k in WORK},
                  "taught_precision": [], "taught_recall": []} for arm in ARMS}  # fmt: skip
    labelled = ssl.labelled_folder(work / "round-0", base)
    seq0 = ssl.labelled_sequence(base, 0, args.patience, args.max_chunks, labelled, with_b=False)
    round0 = {"fitness": seq0["A"], "iterations": seq0["A_iterations"], "chunks": seq0["chunks"]}
    shared = ssl.predictions_of_a(params, seq0, base, ssl.round0_folder(work / "round-0", params, seq0))
    for seed in range(args.seeds):
        seq = {**seq0, "B_seed": ssl.chunk_seed(seed, seq0["best_chunk"] + 1)}  # round 1's training seed
        for arm in ARMS:
            change = ssl.deep_update(params, arm_change(arm, seed))
            folder = work / f"seed-{seed}" / ssl.c_folder(arm, change)
            res = ssl.loop_arm(change, seq, shared, folder)
            review, out = res["review"], arms[arm]
            frames = int(review["items"])
            out["fitness"].append(res["fitness"])
            out["frames"].append(frames)
            for k in WORK:
                out[f"{k}_per_frame"].append(review[k] / frames if frames else 0.0)
            out["corrections_per_frame"].append(
                sum(review[k] for k in ("fixed", "deleted", "added")) / frames if frames else 0.0
            )
            out["taught_precision"].append(res["taught"]["precision"])
            out["taught_recall"].append(res["taught"]["recall"])
            ssl.log(f"seed {seed}: round 0 {seq['A']:.4f}; {arm}: round 1 {res['fitness']:.4f}, "
                    f"{out['corrections_per_frame'][-1]:.2f} corrections per reviewed frame")  # fmt: skip
    mean = ssl.mean
    fit = {arm: mean(arms[arm]["fitness"]) for arm in ARMS}
    corr = {arm: mean(arms[arm]["corrections_per_frame"]) for arm in ARMS}
    return {
        "arms": arms,
        "round0": round0,
        "budget_frames": int(ssl.make_workspace(work / ".params", params).params()["review"].get("max_items", 30)),
        "priority_minus_random": fit["priority"] - fit["random"],
        "priority_minus_uncertainty": fit["priority"] - fit["uncertainty"],
        "corrections_ratio_vs_random": corr["priority"] / corr["random"] if corr["random"] else None,
        "goal": {
            "fitness": fit["priority"] >= fit["random"] + 0.01,
            "corrections": bool(corr["random"]) and corr["priority"] >= 1.5 * corr["random"],
        },
    }


def table(result: dict) -> str:
    arms = result["arms"]
    seeds = len(arms["priority"]["fitness"])
    head = " | ".join(f"seed {i}" for i in range(seeds))
    r0 = result["round0"]
    lines = [f"round 0: fitness {r0['fitness']:.4f} after {r0['iterations']} iterations", "",
             f"arm (round-1 fitness) | {head} | mean | corrections / frame | kept | fixed | deleted | added | "
             "taught P | taught R", "---"]  # fmt: skip
    for arm, v in arms.items():
        per = " | ".join(f"{f:.4f}" for f in v["fitness"])
        work = " | ".join(f"{ssl.mean(v[f'{k}_per_frame']):.2f}" for k in WORK)
        corrections, taught = ssl.mean(v["corrections_per_frame"]), (ssl.mean(v[k]) for k in TAUGHT)
        lines.append(f"{arm} | {per} | {ssl.mean(v['fitness']):.4f} | {corrections:.2f} | {work} | "
                     + " | ".join(f"{t:.3f}" for t in taught))  # fmt: skip
    ratio = result["corrections_ratio_vs_random"]
    lines.append(f"budget {result['budget_frames']} frames; priority - random {result['priority_minus_random']:+.4f}, "
                 f"priority - uncertainty {result['priority_minus_uncertainty']:+.4f}; corrections per frame "
                 f"priority / random {ratio:.2f}x; goal met: {result['goal']}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patience", type=int, default=2, help="chunks without gain that end round 0's training")
    parser.add_argument("--max-chunks", type=int, default=4, help="round 0's chunks at most (4: the demo's round 0)")
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "bench-review"))
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--json", action="store_true", help="print the JSON result (only) on stdout")
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.patience < 1:
        parser.error("--patience must be at least 1 (round 1 trains the chunk after round 0's best)")
    result = run(args)
    if args.out:
        write_json(Path(args.out), result)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
