"""Does pseudo-labelling pay? The loop's round 1 against the best model its labels alone give.

Protocol (fixed on 2026-11-27 before any method was tuned against it; docs/BENCHMARKS.md):

- Data: the demo's synthetic twin (params.yaml `synth`), its split and scarce labels (`split`,
  `prepare`: 4 labelled frames per training video, 64 in all); fitness (0.1 mAP@0.5 + 0.9
  mAP@0.5:0.95) on the fixed validation videos' frames (`evaluate`), as every round is scored.
- Budget unit, a chunk: one call of the round's training with params.yaml's `train` section
  (`epochs` x `crops` training images seen, crops included: 8 x 640 = 5,120 in the demo, 160
  iterations at batch 32).
- **A**, labelled only, trained to convergence: chunk 0 from `train.model` (from scratch), each
  next chunk from the previous one's weights, scored after every chunk; stops when `--patience`
  (2) chunks in a row bring no gain over the best, or after `--max-chunks` (12). A = the best
  chunk; its iterations are reported.
- **B**, A continued on the labelled frames only for an extra budget E = one chunk: the chunk
  after A's best in the same sequence (exactly that call; patience >= 1 means it is trained).
- **C**, the loop's round 1 from A: A's weights as round 0 go through the loop's own stages with
  params.yaml's settings (infer, track, filter with its temporal rule, the simulated expert's
  review with the demo's budget of `review.max_items` frames, merge), then A is trained on the
  merged set for the same E (one chunk, the same seed as B's chunk).
- Seeds 0..N-1 (default 3): seed s runs chunk k with training seed 1000 s + k, which changes the
  crops cut and the training order, never the data, the split, the review or the validation set.
- Reported: per arm and seed the fitness; gain = mean(C) - max(mean(A), mean(B)); the quality
  of what round 1 is taught from the clips, precision and recall (IoU >= 0.5, class-aware) of the
  merged set's pseudo-labelled and reviewed frames' labels against the synthetic truth over every
  frame the model scored; the budget. Goal (issue 13): gain >= +0.02, C > B on every seed,
  accepted pseudo-labels P >= 0.95 at R >= 0.90.
- Ceiling (`--ceiling`, added 2026-12-05; not an arm of the goal): **L**, trained exactly as A (from
  scratch, chunk after chunk, the same patience and seeds) but on every frame of the training videos with
  its label (`prepare.max_frames_per_video: 0`: 960 frames in the demo's twin instead of 64). It says how
  much more labels of the same videos can give at all: headroom = mean(L) - max(mean(A), mean(B)).
- Ablation (`--ablation`): the same C from the same A per seed with one setting changed
  (`ABLATION` below); each row is named by what it changes. A row that changes the round's
  training recipe (e.g. the fine-tune rate) has its own B, trained with that recipe, so every
  row compares C and B trained alike.

Everything lands under `--workdir` (default .cache/bench-ssl) and resumes: a finished chunk or
arm is never trained again (delete the folder to start over). Each cache folder is keyed by what it was
built with (A's chunks by the chunk recipe, A's predictions by A's weights and `infer`/`track`, each C
by the sections it reads), so a changed params.yaml trains what it changes; a workdir built from other
`synth`/`split`/`prepare` sections is refused. An ablation row that params.yaml already says is left out.

    visem-pl bench ssl [--seeds N] [--ablation] [--ceiling] [--json]      # or .venv/bin/python benchmarks/bench_ssl.py
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from visem_pl.tasks.workspace import offline  # noqa: E402

offline.quiet_ultralytics(project_dir=REPO)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from visem_pl.tasks.dataset import layout  # noqa: E402
from visem_pl.tasks.dataset.labels import read_yolo_labels  # noqa: E402
from visem_pl.tasks.dataset.truth import truth_for  # noqa: E402
from visem_pl.tasks.inference.clips import scored_frames  # noqa: E402
from visem_pl.tasks.training.evaluate import EvalConfig, evaluate  # noqa: E402
from visem_pl.tasks.training.metrics import match_boxes  # noqa: E402
from visem_pl.tasks.training.train import TrainConfig, fine_tune, train  # noqa: E402
from visem_pl.tasks.workspace.io import write_json  # noqa: E402
from visem_pl.tasks.workspace.paths import Workspace  # noqa: E402

# One change to params.yaml each, applied to C only (A and B never read these sections).
ABLATION: dict[str, dict] = {
    "confidence only (no temporal rule)": {"filter": {"temporal": {"enabled": False}}},
    "trusted_share 0.25": {"train": {"trusted_share": 0.25}},
    # Cluster and pinhead boxes all go to review (painted out of pseudo-labelled frames): those classes
    # learn from labelled and reviewed frames only, sperm from the pseudo-labels too.
    "sperm pseudo-labels only": {
        "filter": {"bands": {"cluster": {"low": 0.1, "high": 1.0}, "small_or_pinhead": {"low": 0.1, "high": 1.0}}}
    },
    "thresholds calibrated per class (P 0.95 on validation)": {
        "filter": {"calibrate": {"enabled": True, "target_precision": 0.95}}
    },
    "fine-tune at lr0 / 5 (B too)": {"train": {"finetune_lr0": 0.000286}},
    "every pseudo-labelled frame (merge.frames_per_clip 0)": {"merge": {"frames_per_clip": 0}},
    # The written weights an average over the call's last quarter of updates instead of its last ones (B too).
    "weights averaged (train.average_share 0.25, B too)": {"train": {"average_share": 0.25}},
    # A track confirms its boxes only at a mean confidence of 0.5 (filter.temporal.min_track_conf).
    "track confidence (min_track_conf 0.5)": {"filter": {"temporal": {"min_track_conf": 0.5}}},
    # E = four chunks: round 1 (and B) trained 4 x train.epochs in one call.
    "round 1 four chunks long (B too)": {"train": {"epochs": "x4"}},
    "merge.frames_per_clip 4": {"merge": {"frames_per_clip": 4}},
    # Upper bounds (synthetic truth; not a method): the loop's merged frames, each pseudo-labelled frame's
    # labels replaced as said and nothing painted out. They tell which imperfection of the labels costs.
    "bound: pseudo-labels without their false positives": {"_oracle": "clean"},
    "bound: pseudo-labels with their matched boxes made exact": {"_oracle": "tight"},
    "bound: the truth's boxes on the same frames": {"_oracle": "truth"},
}


def log(msg: str) -> None:
    print(f"[bench ssl {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def deep_update(base: dict, change: dict) -> dict:
    """`base` with `change` applied; a value "x<k>" multiplies the number it replaces by k."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict):
            out[key] = deep_update(out.get(key) or {}, value)
        elif isinstance(value, str) and re.fullmatch(r"x\d+", value):
            out[key] = out[key] * int(value[1:])
        else:
            out[key] = value
    return out


def make_workspace(root: Path, params: dict) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return Workspace(root, root / "params.yaml")


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        return
    link_path.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def key_of(value) -> str:
    """A short stable key of a value (a config or sections of params.yaml) for a cache folder's name."""
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:10]


# The sections the twin and its prepared frames are built from: built once per --workdir.
DATA_SECTIONS = ("synth", "split", "prepare")


def twin_and_split(work: Path, params: dict) -> tuple[dict, Workspace]:
    """The demo's twin and prepared frames under `work` (built once); params pointing at them. A workdir
    built from other `synth`, `split` or `prepare` sections is refused (its arms would be another protocol)."""
    from visem_pl.tasks.synth import synthesize
    from visem_pl.tasks.synth.config import synth_config
    from visem_pl.tasks.training.stages import prepare_stage

    built_from = work / "data-sections.json"
    sections = json.loads(json.dumps({k: params.get(k) for k in DATA_SECTIONS}, default=repr))  # as written
    if built_from.exists() and json.loads(built_from.read_text()) != sections:
        sys.exit(f"bench ssl: {work} was built from other {', '.join(DATA_SECTIONS)} sections than "
                 f"{built_from.name} records; use another --workdir or delete this one")  # fmt: skip
    twin = work / "twin"
    params = deep_update(params, {"data": {"root": str(twin.resolve())}})
    base = make_workspace(work / "base", params)
    if not (work / "twin.done").exists():
        log("writing the synthetic twin (params.yaml synth)")
        synthesize(twin, synth_config(params.get("synth") or {}), progress=False, overwrite=True)
        (work / "twin.done").write_text("ok\n")
    if not (base.prepared / "frames.csv").exists():
        prepare_stage(base)
    write_json(built_from, sections)  # recorded once built
    return params, base


def fitness_of(weights: Path, val: pd.DataFrame, cfg: EvalConfig, out: Path) -> float:
    if out.exists():
        return json.loads(out.read_text())["overall"]["fitness"]
    result = evaluate(weights, val, cfg)
    write_json(out, result)
    return result["overall"]["fitness"]


def chunk_seed(seed: int, k: int) -> int:
    return 1000 * seed + k


def chunk_config(base: Workspace) -> TrainConfig:
    """What one chunk of arm A trains with: params.yaml's `train` section, its own epochs."""
    return base.section("train", TrainConfig, drop=("restart_each_round",))


def labelled_folder(parent: Path, base: Workspace) -> Path:
    """Arm A's chunks' folder under `parent`, keyed by what a labelled-only chunk reads (the chunk recipe but
    its seed, and the fields that only weigh or fine-tune other rounds), so another recipe trains its own A."""
    cfg = replace(chunk_config(base), seed=0, trusted_share=0.0, finetune_lr0=0.0, round0_epochs=0)
    return parent / f"labelled-{key_of(repr(cfg))}"


def round0_folder(parent: Path, params: dict, seq: dict) -> Path:
    """The folder of A's predictions and tracks (round 0 of C), keyed by A's weights and the sections read."""
    return parent / f"round-0-{key_of([seq['A_weights'], params.get('infer'), params.get('track')])}"


def labelled_sequence(
    base: Workspace, seed: int, patience: int, max_chunks: int, folder: Path, with_b: bool = True, arm: str = "A"
) -> dict:
    """Arm A's chunks until `patience` chunks bring no gain (and the one after the best, arm B, unless
    `with_b` is false: bench review needs only A; its "B" is then None when that chunk was not trained)."""
    cfg = chunk_config(base)
    eval_cfg = base.section("evaluate", EvalConfig)
    frames = pd.read_csv(base.prepared / "frames.csv")
    labelled, val = frames[frames["split"] == "train"], frames[frames["split"] == "val"]
    fits: list[float] = []
    k = 0
    while True:
        chunk = folder / f"chunk-{k:02d}"
        if not (chunk / "weights.pt").exists():
            init = None if k == 0 else str(folder / f"chunk-{k - 1:02d}" / "weights.pt")
            log(f"seed {seed}: {arm} chunk {k} (labelled only, from {'scratch' if init is None else f'chunk {k - 1}'})")
            train(labelled, chunk, replace(cfg, seed=chunk_seed(seed, k)), init=init)
        fits.append(fitness_of(chunk / "weights.pt", val, eval_cfg, chunk / "eval.json"))
        best = int(np.argmax(fits))
        log(f"seed {seed}: {arm} chunk {k} fitness {fits[-1]:.4f} (best chunk {best}: {fits[best]:.4f})")
        if k - best >= patience or k + 1 >= max_chunks:
            if k > best or not with_b:  # B, the chunk after the best, exists (or is not needed)
                break
        k += 1
    iterations = cfg.epochs * -(-cfg.crops // cfg.batch)
    return {
        "chunks": fits,
        "best_chunk": best,
        "A": fits[best],
        "B": fits[best + 1] if best + 1 < len(fits) else None,
        "A_iterations": (best + 1) * iterations,
        "chunk_iterations": iterations,
        "chunk_images": cfg.epochs * cfg.crops,
        "A_weights": str(folder / f"chunk-{best:02d}" / "weights.pt"),
        "B_seed": chunk_seed(seed, best + 1),
    }


def labelled_continuation(params: dict, base: Workspace, seq: dict, folder: Path) -> float:
    """B for a row of the table: A + E on the labelled frames with the row's round recipe (`fine_tune`
    of its `train` section). The chunk after A's best when that recipe is the chunks' own, else trained."""
    chunk_cfg = replace(chunk_config(base), seed=seq["B_seed"])
    ws = make_workspace(folder.parent / ".params", params)
    cfg = replace(fine_tune(ws.section("train", TrainConfig, drop=("restart_each_round",))), seed=seq["B_seed"])
    # trusted_share weighs labelled against pseudo-labelled crops: it changes nothing on labels alone.
    if replace(cfg, trusted_share=0.0) == replace(chunk_cfg, trusted_share=0.0):
        return seq["B"]
    out = folder / f"B-{key_of(repr(replace(cfg, trusted_share=0.0)))}"
    if not (out / "weights.pt").exists():
        log(f"{folder.name}: B with this row's round recipe (labelled only, from A)")
        frames = pd.read_csv(base.prepared / "frames.csv")
        train(frames[frames["split"] == "train"], out, cfg, init=seq["A_weights"])
    frames = pd.read_csv(base.prepared / "frames.csv")
    return fitness_of(out / "weights.pt", frames[frames["split"] == "val"], base.section("evaluate", EvalConfig),
                      out / "eval.json")  # fmt: skip


def predictions_of_a(params: dict, seq: dict, base: Workspace, folder: Path) -> Workspace:
    """A's weights as round 0 of a workspace: the loop's infer and track (shared by every C variant)."""
    from visem_pl.tasks.inference.stages import infer_stage
    from visem_pl.tasks.tracking.stages import track_stage

    ws = make_workspace(folder, params)
    link(Path(seq["A_weights"]).parent, ws.round(0).model_dir)
    link(base.prepared, ws.prepared)
    if not (folder / "done.json").exists():
        log(f"{folder.name}: infer and track with A's weights")
        infer_stage(ws, 0)
        track_stage(ws, 0)
        write_json(folder / "done.json", {"ok": True})
    return ws


def taught_quality(ws: Workspace) -> dict:
    """P and R (IoU 0.5, class-aware) of the labels round 1 is taught on every frame round 0 scored:
    the merged set's label for a pseudo-labelled or reviewed frame, nothing for a frame left out."""
    truth = truth_for(ws.data_root())
    paths = ws.round(0)
    merged = pd.read_csv(paths.merged / "frames.csv")
    merged = merged[merged["source"] != "labelled"]
    label_of = {Path(p).stem: p for p in merged["label"]}
    tp = n_pred = n_truth = 0
    for pred_file in sorted(paths.predictions.glob("*.parquet")):
        clip = pred_file.stem
        gt_clip = truth.clip(clip)
        gt_by_frame = {f: g for f, g in gt_clip.groupby("frame")}
        for frame in scored_frames(pred_file):
            gt = gt_by_frame.get(frame, gt_clip.iloc[0:0])
            n_truth += len(gt)
            label = label_of.get(layout.frame_item(clip, frame))
            boxes = read_yolo_labels(label) if label else np.zeros((0, 5))
            if not len(boxes):
                continue
            pred = pd.DataFrame(boxes, columns=["cls", "cx", "cy", "w", "h"]).assign(conf=1.0)
            n_pred += len(pred)
            tp += int(match_boxes(pred, gt).sum()) if len(gt) else 0
    return {"precision": tp / n_pred if n_pred else None, "recall": tp / n_truth if n_truth else None,
            "boxes": n_pred, "truth": n_truth}  # fmt: skip


def oracle_labels(ws: Workspace, mode: str) -> pd.DataFrame:
    """The round's pseudo-labels (boxes.parquet's accepted boxes) rewritten from the synthetic truth:
    `clean` drops the boxes that match no true box (IoU >= 0.5, class-aware), `tight` also replaces each
    matched box by its true box, `truth` takes every true box of the frame. The accepted boxes to merge."""
    from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy

    truth = truth_for(ws.data_root())
    boxes = pd.read_parquet(ws.round(0).boxes)
    accepted = boxes[boxes["band"] == "accept"]
    frames = []
    for (clip, frame), g in accepted.groupby(["clip", "frame"], sort=True):
        gt = truth.frame(clip, int(frame))
        ours = g[["cls", "cx", "cy", "w", "h"]].reset_index(drop=True)
        if mode == "truth":
            ours = gt.rename(columns={"class": "cls"})
        else:
            tp = match_boxes(ours.assign(conf=1.0), gt) if len(gt) and len(ours) else np.zeros(len(ours), bool)
            ours = ours[tp]
            if mode == "tight" and len(ours):
                cols = ["cx", "cy", "w", "h"]
                iou = box_iou(xywhn_to_xyxy(ours[cols].to_numpy(), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT),
                              xywhn_to_xyxy(gt[cols].to_numpy(), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT))  # fmt: skip
                iou[ours["cls"].to_numpy()[:, None] != gt["class"].to_numpy()[None, :]] = 0.0
                ours = ours.assign(**{c: gt[c].to_numpy()[iou.argmax(axis=1)] for c in cols})
        frames.append(ours[["cls", "cx", "cy", "w", "h"]].assign(clip=clip, frame=int(frame)))
    columns = ["clip", "frame", "cls", "cx", "cy", "w", "h"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def loop_arm(params: dict, seq: dict, shared: Workspace, folder: Path) -> dict:
    """C: the loop's filter, review and merge over A's predictions, then A trained one chunk on the merged set."""
    from visem_pl.tasks.pseudo.stages import filter_stage, merge_stage
    from visem_pl.tasks.review.stages import review_stage
    from visem_pl.tasks.training.stages import train_stage

    result_file = folder / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted arm starts over
    params = deep_update(params, {"train": {"seed": seq["B_seed"]}})
    oracle = params.pop("_oracle", None)
    ws = make_workspace(folder, params)
    link(shared.prepared, ws.prepared)
    link(shared.round(0).model_dir, ws.round(0).model_dir)
    for sub in ("predictions", "tracks", "validation"):
        link(shared.round(0).data / sub, ws.round(0).data / sub)
    log(f"{folder.parent.name}/{folder.name}: filter, review, merge, train one chunk on the merged set")
    pseudo = filter_stage(ws, 0)
    review = review_stage(ws, 0)
    if oracle:
        from visem_pl.tasks.pseudo.merge import MergeConfig, completeness, merge_round

        oracle = oracle_labels(ws, oracle)
        labelled = pd.read_csv(ws.prepared / "frames.csv")
        reviewed = [(0, ws.round(0).reviewed / "labels")]
        bound = ws.section("merge", MergeConfig).frames_per_clip
        complete = completeness(pd.read_parquet(ws.round(0).boxes))
        merged = merge_round(0, labelled[labelled["split"] == "train"], oracle, reviewed,
                             ws.clips(), ws.round(0).merged, frames_per_clip=bound, complete=complete)  # fmt: skip
    else:
        merged = merge_stage(ws, 0)
    train_stage(ws, 1)
    frames = pd.read_csv(ws.prepared / "frames.csv")
    fit = fitness_of(ws.round(1).weights, frames[frames["split"] == "val"], ws.section("evaluate", EvalConfig),
                     ws.round(1).metrics / "eval.json")  # fmt: skip
    result = {
        "fitness": fit,
        "taught": taught_quality(ws),
        "accepted_boxes": pseudo.get("accept"),
        "review": review,
        "calibration": pseudo.get("calibration"),
        "merged_frames": merged["frames"],
    }
    write_json(result_file, result)
    return result


def ceiling_base(work: Path, params: dict) -> Workspace:
    """The same twin with every frame of the training videos labelled (arm L's prepared frames)."""
    from visem_pl.tasks.training.stages import prepare_stage

    every = deep_update(params, {"prepare": {"train_stride": 1, "max_frames_per_video": 0}})
    base = make_workspace(work / "base-every-frame", every)
    if not (base.prepared / "frames.csv").exists():
        prepare_stage(base)
    return base


def c_folder(name: str, params: dict) -> str:
    """A C arm's folder: the row's name and a key of the sections C reads, so a finished arm is reused
    only while they are what it was run with (a changed params.yaml runs the row again)."""
    read = {k: params.get(k) for k in ("filter", "review", "merge", "train", "_oracle")}
    return "C-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + "-" + key_of(read)


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def run(args) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    project = Workspace(REPO if args.params is None else Path(args.params).parent,
                        args.params or REPO / "params.yaml").params()  # fmt: skip
    params, base = twin_and_split(work, project)
    variants = {"loop (params.yaml)": {}}
    if args.ablation:
        for name, change in ABLATION.items():
            if args.rows and not any(r in name for r in args.rows):
                continue
            if deep_update(params, change) == params:  # what params.yaml already says: the loop row itself
                log(f"row '{name}' is params.yaml's own setting: left out (the loop row is it)")
                continue
            variants[name] = change
    arms: dict[str, dict] = {"A": {"fitness": [], "iterations": []}, "B": {"fitness": []}, "C": {"fitness": []}}
    ablation: dict[str, dict] = {name: {"fitness": [], "B": [], "taught": []} for name in variants}
    seqs = []
    if args.ceiling:
        every = ceiling_base(work, params)
        frames = pd.read_csv(every.prepared / "frames.csv")
        arms["L"] = {"fitness": [], "iterations": [], "frames": int((frames["split"] == "train").sum())}
    for seed in range(args.seeds):
        labelled = labelled_folder(work / f"seed-{seed}", base)
        seq = labelled_sequence(base, seed, args.patience, args.max_chunks, labelled)
        seqs.append(seq)
        arms["A"]["fitness"].append(seq["A"])
        arms["A"]["iterations"].append(seq["A_iterations"])
        arms["B"]["fitness"].append(seq["B"])
        if args.ceiling:
            folder = labelled_folder(work / f"seed-{seed}" / "every-frame", every)
            ceiling = labelled_sequence(every, seed, args.patience, args.max_chunks, folder, with_b=False, arm="L")
            arms["L"]["fitness"].append(ceiling["A"])
            arms["L"]["iterations"].append(ceiling["A_iterations"])
            log(f"seed {seed}: A {seq['A']:.4f}, L {ceiling['A']:.4f} ({arms['L']['frames']} labelled frames)")
        shared = predictions_of_a(params, seq, base, round0_folder(work / f"seed-{seed}", params, seq))
        for name, change in variants.items():
            folder = work / f"seed-{seed}" / c_folder(name, deep_update(params, change))
            res = loop_arm(deep_update(params, change), seq, shared, folder)
            b = labelled_continuation(deep_update(params, change), base, seq, labelled)
            ablation[name]["fitness"].append(res["fitness"])
            ablation[name]["B"].append(b)
            ablation[name]["taught"].append(res["taught"])
            log(f"seed {seed}: A {seq['A']:.4f} B {seq['B']:.4f} C[{name}] {res['fitness']:.4f}")
    loop = ablation["loop (params.yaml)"]
    arms["C"]["fitness"] = loop["fitness"]
    taught = loop["taught"]
    seq0 = seqs[0]
    best_ab = max(mean(arms["A"]["fitness"]), mean(arms["B"]["fitness"]))
    return {
        "arms": arms,
        **({"headroom": mean(arms["L"]["fitness"]) - best_ab} if args.ceiling else {}),
        "gain": mean(arms["C"]["fitness"]) - best_ab,
        "c_above_b_every_seed": all(c > b for c, b in zip(arms["C"]["fitness"], arms["B"]["fitness"])),
        "pseudo": {
            "precision": mean([t["precision"] for t in taught if t["precision"] is not None]),
            "recall": mean([t["recall"] for t in taught if t["recall"] is not None]),
            "per_seed": taught,
        },
        "budget": {
            "unit": "one chunk: params.yaml train.epochs x train.crops training images (crops included)",
            "chunk_images": seq0["chunk_images"],
            "chunk_iterations": seq0["chunk_iterations"],
            "E_images": seq0["chunk_images"],
            "patience_chunks": args.patience,
            "max_chunks": args.max_chunks,
            "A_chunks_per_seed": [s["chunks"] for s in seqs],
        },
        "ablation": {
            name: {
                "fitness": v["fitness"],
                "mean": mean(v["fitness"]),
                "B": v["B"],
                "gain": mean(v["fitness"]) - max(mean(arms["A"]["fitness"]), mean(v["B"])),
                "c_above_b_every_seed": all(c > b for c, b in zip(v["fitness"], v["B"])),
                "taught_precision": mean([t["precision"] for t in v["taught"] if t["precision"] is not None]),
                "taught_recall": mean([t["recall"] for t in v["taught"] if t["recall"] is not None]),
            }
            for name, v in ablation.items()
        },
    }


def table(result: dict) -> str:
    arms = result["arms"]
    lines = ["arm | " + " | ".join(f"seed {i}" for i in range(len(arms["A"]["fitness"]))) + " | mean", "---"]
    for name, label in (("A", "A labelled only, converged"), ("B", "B = A + E labelled"), ("C", "C = A + E merged")):
        f = arms[name]["fitness"]
        lines.append(f"{label} | " + " | ".join(f"{v:.4f}" for v in f) + f" | {mean(f):.4f}")
    if "L" in arms:
        f = arms["L"]["fitness"]
        lines.append(f"L every frame labelled ({arms['L']['frames']}), converged | " + " | ".join(f"{v:.4f}" for v in f)
                     + f" | {mean(f):.4f}")  # fmt: skip
        lines.append(f"L's iterations: {arms['L']['iterations']}; headroom of more labels {result['headroom']:+.4f}")
    lines.append(f"A's iterations: {arms['A']['iterations']}; gain {result['gain']:+.4f}; "
                 f"C > B on every seed: {result['c_above_b_every_seed']}")  # fmt: skip
    p = result["pseudo"]
    lines.append(f"taught from the clips: P {p['precision']:.3f} R {p['recall']:.3f}")
    if len(result["ablation"]) > 1:
        lines += ["", "row | C per seed | C mean | B per seed | gain | C > B every seed | taught P | taught R", "---"]
        for name, v in result["ablation"].items():
            c, b = (" ".join(f"{f:.4f}" for f in v[k]) for k in ("fitness", "B"))
            lines.append(f"{name} | {c} | {v['mean']:.4f} | {b} | {v['gain']:+.4f} | {v['c_above_b_every_seed']} | "
                         f"{v['taught_precision']:.3f} | {v['taught_recall']:.3f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patience", type=int, default=2, help="chunks without gain that stop arm A")
    parser.add_argument("--max-chunks", type=int, default=12)
    parser.add_argument("--ablation", action="store_true", help="also every row of ABLATION (C only)")
    parser.add_argument("--ceiling", action="store_true", help="also arm L: A's training on every frame labelled")
    parser.add_argument("--rows", nargs="*", default=None, help="only the ablation rows whose names contain one")
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "bench-ssl"))
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--json", action="store_true", help="print the JSON result (only) on stdout")
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.patience < 1:
        parser.error("--patience must be at least 1 (arm B is the chunk after A's best)")
    result = run(args)
    if args.out:
        write_json(Path(args.out), result)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
