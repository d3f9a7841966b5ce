"""Seeding strategies for seeded queries, measured: seed coverage, cost of more queries, and (with
trained checkpoints) mAP / recall per seeding strategy, evaluation query count and re-seeding pass.

Three parts, each printing one JSON line per measurement and writing its table into ``--out``:

``coverage`` (no model): on preprocessed scenes (e.g. the ScanNet-scale study's data, ``--data-root``),
the share of GT instances holding >= 1 seed, by size bucket, for FPS on superpoint centroids ("fps",
today's default) and size-aware FPS ("size:<alpha>", ``pointformer.models.sampling.size_score_scale``)
at several query counts. Objectness-guided seeding needs a trained head: see ``checkpoints``.

``cost`` (no trained model): wall-clock of one training step (forward + Influencer Loss + backward) and
of one evaluation forward of the ``--experiment`` model on one room, per query count: the decoder and
the loss are O(N·P), the backbone is not.

``checkpoints`` (``--checkpoint PATH``, repeatable; trained seeded runs of the study): per checkpoint and
setting -- evaluation query count x seeding strategy (fps, size, objectness) x re-seeding pass
(``pointformer.inference.reseed``) -- mAP / mAP50 / mAP25 on the val split, seed coverage, and
class-agnostic recall at IoU 0.5 (1 - unmatched-GT rate). Also the coverage-vs-recall plot.

    S=benchmarks/results/convergence/scannet_scale
    D=$S/data/synthetic_scannet_v150000_n8+4_s0/preprocessed
    PYTHONPATH=. .venv/bin/python benchmarks/seeding.py coverage --data-root $D --out $S
    PYTHONPATH=. .venv/bin/python benchmarks/seeding.py cost --data-root $D --out $S
    PYTHONPATH=. .venv/bin/python benchmarks/seeding.py checkpoints --data-root $D --out $S \\
        --checkpoint $S/runs/influencer@lr0.003/seed0/checkpoints/<last>.pt
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from pointformer.evaluation.seed_coverage import (SIZE_BUCKETS, SceneSeedCoverage, bucket_names, scene_seed_coverage,
                                                  summarize_seed_coverage)
from pointformer.io.atomic import atomic_write_json, atomic_write_text
from pointformer.models.sampling import farthest_point_sampling, size_score_scale

DEFAULT_QUERIES = (60, 100, 150, 200, 300)
DEFAULT_STRATEGIES = ("fps", "size:0.25", "size:0.5", "size:1", "oracle_fg")


def emit(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


# ----------------------------------------------------------------------------------------- scenes
def load_token_scenes(data_root: Path, splits: Sequence[str], experiment: str) -> list[dict[str, Any]]:
    """Per scene: token positions float [P, 3] (superpoint centroids), weights [P] (points) and
    GT token_instance long [P], from a preprocessed dataset (no transform)."""
    from pointformer.build import make_dataset
    from pointformer.config import RunSettings, compose_config

    settings = RunSettings.from_config(compose_config([f"experiment={experiment}", f"data.root={data_root}"]))
    scenes = []
    for split in splits:
        dataset = make_dataset(settings.data, split, train=False, seed=0, transform=False)
        for i in range(len(dataset)):
            sample = dataset[i]
            sp = torch.as_tensor(np.asarray(sample.superpoint), dtype=torch.long)
            xyz = torch.as_tensor(np.asarray(sample.xyz), dtype=torch.float64)
            count = int(sp.max()) + 1
            weights = torch.bincount(sp, minlength=count).double()
            centroids = torch.zeros(count, 3, dtype=torch.float64).index_add_(0, sp, xyz)
            centroids /= weights.clamp_min(1.0)[:, None]
            scenes.append({"scene_id": sample.scene_id, "split": split, "positions": centroids.float(),
                           "weights": weights.float(),
                           "token_instance": torch.as_tensor(sample.targets.token_instance, dtype=torch.long)})
    if not scenes:
        raise ValueError(f"{data_root}: no scenes in splits {list(splits)}")
    return scenes


def seeds_for(strategy: str, positions: torch.Tensor, weights: torch.Tensor, num: int,
              token_instance: Optional[torch.Tensor] = None) -> torch.Tensor:
    """long [num] seed tokens of one scene by a strategy name: "fps", "size:<alpha>" or "oracle_fg" (FPS
    among the GT foreground tokens first: the upper bound of objectness-guided seeding with a perfect head)."""
    valid = (weights > 0)[None]
    scale = priority = None
    if strategy.startswith("size:"):
        scale = size_score_scale(weights[None], valid, float(strategy.split(":", 1)[1]))
    elif strategy == "oracle_fg":
        if token_instance is None:
            raise ValueError("oracle_fg needs the GT token instances")
        priority = (token_instance > 0)[None]
    elif strategy != "fps":
        raise ValueError(f"unknown strategy {strategy!r}: fps, size:<alpha> or oracle_fg")
    seeds = farthest_point_sampling(positions[None], valid, min(num, positions.shape[0]), priority=priority,
                                    score_scale=scale)[0]
    return seeds[seeds >= 0]


# ----------------------------------------------------------------------------------------- coverage
def run_coverage(args: argparse.Namespace) -> dict[str, Any]:
    scenes = load_token_scenes(args.data_root, args.splits.split(","), args.experiment)
    tokens = float(np.mean([s["positions"].shape[0] for s in scenes]))
    rows = []
    for strategy in args.strategies.split(","):
        for num in (int(q) for q in args.queries.split(",")):
            start = time.perf_counter()
            per_scene: list[SceneSeedCoverage] = [
                scene_seed_coverage(seeds_for(strategy, s["positions"], s["weights"], num, s["token_instance"]),
                                    s["token_instance"], s["weights"]) for s in scenes]
            on_background = [float((s["token_instance"][seeds_for(strategy, s["positions"], s["weights"], num,
                                                                   s["token_instance"])] <= 0).float().mean())
                             for s in scenes]
            seconds = (time.perf_counter() - start) / len(scenes)
            row = {"strategy": strategy, "queries": num, **summarize_seed_coverage(per_scene),
                   "seeds_on_background": float(np.mean(on_background)), "seconds_per_scene": seconds}
            rows.append(row)
            emit("coverage", **row)
    result = {"scenes": len(scenes), "splits": args.splits, "tokens_per_scene": tokens, "rows": rows,
              "data_root": str(args.data_root)}
    out = Path(args.out)
    atomic_write_json(out / "seeding_coverage.json", result)
    atomic_write_text(out / "seeding_coverage.md", coverage_markdown(result))
    return result


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def coverage_markdown(result: dict[str, Any]) -> str:
    names = bucket_names(SIZE_BUCKETS)
    first = result["rows"][0]
    counts = ", ".join(f"{n}: {int(first[f'seed_coverage/instances/{n}'])}" for n in names)
    lines = [f"Seed coverage (share of GT instances with >= 1 seed) on {result['scenes']} scenes "
             f"({result['splits']}), {result['tokens_per_scene']:.0f} superpoints per scene on average; "
             f"GT instances by size (points): {counts}.", "",
             "| strategy | queries | all | " + " | ".join(names) + " | seeds on background |",
             "|---|---|---|" + "---|" * len(names) + "---|"]
    for r in result["rows"]:
        lines.append(f"| {r['strategy']} | {r['queries']} | {_pct(r['seed_coverage'])} | "
                     + " | ".join(_pct(r[f"seed_coverage/{n}"]) for n in names)
                     + f" | {_pct(r['seeds_on_background'])} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- preset statistics
def run_preset_stats(args: argparse.Namespace) -> dict[str, Any]:
    """Statistics of generated rooms: vertices, superpoints, annotated objects and benchmark instances per
    room, benchmark instance sizes (vertices) by bucket and by class, from a synthetic release
    (``--raw-root``: scans/ with aggregation and segs files) and its preprocessed GT (``--data-root``/gt)."""
    from pointformer.io.labels import SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES

    raw = Path(args.raw_root)
    rooms, sizes, classes = [], [], []
    for folder in sorted((raw / "scans").iterdir()):
        sid = folder.name
        aggregation = json.loads((folder / f"{sid}.aggregation.json").read_text())
        segs = json.loads((folder / f"{sid}_vh_clean_2.0.010000.segs.json").read_text())["segIndices"]
        gt_file = next((Path(args.data_root) / "gt").glob(f"*/{sid}.txt"), None)
        if gt_file is None:
            raise ValueError(f"{args.data_root}/gt: no GT file for {sid}")
        gt = np.loadtxt(gt_file, dtype=np.int64)
        ids, counts = np.unique(gt[gt > 0], return_counts=True)
        keep = np.isin(ids // 1000, SCANNET_INSTANCE_IDS)
        sizes.extend(counts[keep].tolist())
        classes.extend((ids[keep] // 1000).tolist())
        rooms.append({"scene": sid, "vertices": len(segs), "superpoints": len(set(segs)),
                      "annotated_objects": len(aggregation["segGroups"]), "benchmark_instances": int(keep.sum())})
    size_arr = np.array(sizes)
    edges = list(SIZE_BUCKETS)
    buckets = {name: int(((size_arr >= lo) & (size_arr < hi)).sum())
               for name, lo, hi in zip(bucket_names(edges), edges[:-1], edges[1:])}
    name_of = dict(zip(SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES))
    by_class = {}
    for c in sorted(set(classes)):
        members = size_arr[np.array(classes) == c]
        by_class[name_of.get(c, str(c))] = {"instances": int(members.size),
                                            "median_vertices": float(np.median(members))}

    def stat(key: str) -> dict[str, float]:
        values = [r[key] for r in rooms]
        return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}

    result = {"rooms": len(rooms), "per_room": rooms, **{k: stat(k) for k in
              ("vertices", "superpoints", "annotated_objects", "benchmark_instances")},
              "instance_size_buckets": buckets, "share_under_2k": float(np.mean(size_arr < 2000)),
              "median_instance_vertices": float(np.median(size_arr)), "by_class": by_class}
    emit("preset_stats", **{k: v for k, v in result.items() if k not in ("per_room", "by_class")})
    out = Path(args.out)
    atomic_write_json(out / "preset_stats.json", result)
    lines = [f"Generated rooms (`--preset scannet`): {len(rooms)} rooms.", "",
             "| per room | mean | min | max |", "|---|---|---|---|"]
    for key in ("vertices", "superpoints", "annotated_objects", "benchmark_instances"):
        st = result[key]
        lines.append(f"| {key.replace('_', ' ')} | {st['mean']:.0f} | {st['min']:.0f} | {st['max']:.0f} |")
    lines += ["", "Benchmark-class instances by size (vertices): "
              + ", ".join(f"{k}: {v}" for k, v in buckets.items())
              + f"; {100 * result['share_under_2k']:.0f} % under 2k; median {result['median_instance_vertices']:.0f}.",
              "", "| class | instances | median vertices |", "|---|---|---|"]
    for name, st in sorted(by_class.items(), key=lambda kv: kv[1]["median_vertices"]):
        lines.append(f"| {name} | {st['instances']} | {st['median_vertices']:.0f} |")
    atomic_write_text(out / "preset_stats.md", "\n".join(lines) + "\n")
    return result


# ----------------------------------------------------------------------------------------- cost
def run_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Step and evaluation-forward wall-clock per query count on the first val scene (median of repeats)."""
    from torch.utils.data import DataLoader

    from pointformer.build import build_model, dataset_class_ids, make_dataset, resolve_color_stats
    from pointformer.config import RunSettings, compose_config
    from pointformer.data.collate import collate_scenes
    from pointformer.engine.task import InstanceSegmentationTask

    torch.manual_seed(0)
    rows = []
    for num in (int(q) for q in args.queries.split(",")):
        cfg = compose_config([f"experiment={args.experiment}", f"data.root={args.data_root}",
                              f"model.decoder.num_queries={num}", f"loss={args.loss}"])
        settings = RunSettings.from_config(cfg)
        data = resolve_color_stats(settings.data)
        model = build_model(settings)
        task = InstanceSegmentationTask.from_settings(settings, class_ids=dataset_class_ids(settings))
        batch = next(iter(DataLoader(make_dataset(data, "val", train=False, seed=0, limit=1), batch_size=1,
                                     collate_fn=collate_scenes)))
        step_times, eval_times = [], []
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for repeat in range(args.repeats + 1):   # the first round warms up (allocations, caches): not timed
            model.train()
            start = time.perf_counter()
            loss, _ = task.training_loss(model, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step_times.append(time.perf_counter() - start)
            model.eval()
            start = time.perf_counter()
            with torch.no_grad():
                model(batch, num_queries=num)
            eval_times.append(time.perf_counter() - start)
            if repeat == 0:
                step_times, eval_times = [], []
        row = {"queries": num, "loss": args.loss, "tokens": int(batch.token_offsets[-1]),
               "points": int(batch.xyz.shape[0]), "step_seconds": statistics.median(step_times),
               "eval_forward_seconds": statistics.median(eval_times), "repeats": args.repeats}
        rows.append(row)
        emit("cost", **row)
    base = rows[0]
    for r in rows:
        r["step_ratio"] = r["step_seconds"] / base["step_seconds"]
        r["eval_ratio"] = r["eval_forward_seconds"] / base["eval_forward_seconds"]
    result = {"experiment": args.experiment, "rows": rows, "threads": torch.get_num_threads()}
    out = Path(args.out)
    atomic_write_json(out / "seeding_cost.json", result)
    lines = [f"Cost of more queries: `{args.experiment}` model, loss {args.loss}, one val room "
             f"({base['points']} points, {base['tokens']} superpoints), median of {args.repeats} "
             "after a warm-up round, "
             f"{result['threads']} thread(s), measured side by side in one run.", "",
             "| queries | train step (s) | ratio | eval forward (s) | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['queries']} | {r['step_seconds']:.2f} | {r['step_ratio']:.2f} | "
                     f"{r['eval_forward_seconds']:.2f} | {r['eval_ratio']:.2f} |")
    atomic_write_text(out / "seeding_cost.md", "\n".join(lines) + "\n")
    return result


# ----------------------------------------------------------------------------------------- checkpoints
class CapturingModel:
    """Calls the model and keeps the last output's seeds (what ``predict_instances`` sees as the model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.seeds: list[torch.Tensor] = []

    @property
    def decoder(self) -> torch.nn.Module:
        return self.model.decoder

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        self.seeds = [s.detach() for s in out.query_seed_token]
        return out


SETTINGS = (  # (name, eval queries, seed_sampling, reseed)
    ("fps@60", 60, "fps", False), ("fps@100", 100, "fps", False), ("fps@150", 150, "fps", False),
    ("fps@200", 200, "fps", False), ("size@100", 100, "size", False), ("objectness@100", 100, "objectness", False),
    ("fps@100+reseed", 100, "fps", True), ("size@100+reseed", 100, "size", True),
)


def evaluate_checkpoint(path: Path, data_root: Optional[Path], settings_subset: Sequence[str]) -> list[dict[str, Any]]:
    from torch.utils.data import DataLoader

    from pointformer.build import check_classes
    from pointformer.data.collate import collate_scenes
    from pointformer.evaluation import evaluate_scenes
    from pointformer.evaluation.query_diagnostics import scene_diagnostics, summarize
    from pointformer.inference.predictor import Predictor, predict_instances
    from pointformer.inference.reseed import Reseeder

    rows = []
    for name, queries, sampling, reseed in SETTINGS:
        if settings_subset and name not in settings_subset:
            continue
        overrides = [f"model.decoder.eval_num_queries={queries}", f"model.decoder.seed_sampling={sampling}"]
        predictor = Predictor.from_checkpoint(path, overrides, device="cpu")
        if predictor.model.decoder.query_init != "seeded":
            raise ValueError(f"{path}: learned queries; the seeding settings apply to seeded runs only")
        dataset = predictor.dataset("val", data_root=data_root)
        class_ids = check_classes(predictor.settings, dataset)
        loader = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_scenes)
        model = CapturingModel(predictor.model)
        gt, preds, names, coverage, diagnostics = [], [], [], [], []
        start = time.perf_counter()
        for batch in loader:
            batch = batch.to(predictor.device)
            scenes = predict_instances(model, batch, predictor.postprocessor, seed=predictor.settings.eval.seed,
                                       reseeder=Reseeder() if reseed else None)
            for b, (instances, point_tokens) in enumerate(scenes):
                target = batch.targets[b]
                # the seeds of the first pass plus the re-seeding pass's (its queries' index >= N)
                seeds = model.seeds[b]
                coverage.append(scene_seed_coverage(seeds, target.token_instance, target.token_weight))
                diagnostics.append(scene_diagnostics(instances.masks, instances.scores, instances.query_index,
                                                     target.token_instance, target.token_weight))
                preds.append(instances.to_scene_prediction(point_tokens, class_ids))
                gt.append(batch.gt_ids[b])
                names.append(batch.scene_ids[b])
        seconds = time.perf_counter() - start
        result = evaluate_scenes(gt, preds, dataset=predictor.settings.data.dataset, scene_names=names)
        diag = summarize(diagnostics)
        row = {"checkpoint": str(path), "setting": name, "queries": queries, "seed_sampling": sampling,
               "reseed": reseed, "map": result.map, "map50": result.map50, "map25": result.map25,
               "recall50": None if diag["unmatched_gt_rate"] is None else 1.0 - diag["unmatched_gt_rate"],
               "duplicate_rate": diag["duplicate_rate"], "predictions_per_scene": diag["queries_per_scene"],
               **summarize_seed_coverage(coverage), "seconds": seconds, "step": predictor.step}
        rows.append(row)
        emit("checkpoint_eval", **row)
    return rows


def run_checkpoints(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for path in args.checkpoint:
        rows.extend(evaluate_checkpoint(Path(path), args.data_root, [s for s in args.settings.split(",") if s]))
    out = Path(args.out)
    result = {"rows": rows}
    atomic_write_json(out / "seeding_checkpoints.json", result)
    atomic_write_text(out / "seeding_checkpoints.md", checkpoints_markdown(rows))
    plot_coverage_vs_recall(rows, out / "coverage_vs_recall.png")
    return result


def _run_name(path: str) -> str:
    parts = Path(path).parts
    runs = parts.index("runs") if "runs" in parts else -3
    return "/".join(parts[runs + 1: runs + 3])


def checkpoints_markdown(rows: Sequence[dict[str, Any]]) -> str:
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_run.setdefault(_run_name(r["checkpoint"]).split("/")[0], []).append(r)
    lines = ["Per setting: mean over the checkpoints of each run group (seeds), val split. coverage = GT "
             "instances with a seed (the re-seeding pass's new seeds not counted); recall50 = class-agnostic "
             "recall at IoU 0.5.", "",
             "| run | setting | checkpoints | mAP | mAP50 | mAP25 | recall50 | seed coverage | coverage <500 | "
             "coverage 500-2k | duplicates | predictions / scene |", "|---" * 12 + "|"]

    def mean(values: list[Any]) -> str:
        values = [v for v in values if v is not None]
        return f"{np.mean(values):.3f}" if values else "–"

    for run, group in by_run.items():
        for setting in settings:
            sel = [r for r in group if r["setting"] == setting]
            if not sel:
                continue
            lines.append(f"| {run} | {setting} | {len(sel)} | {mean([r['map'] for r in sel])} | "
                         f"{mean([r['map50'] for r in sel])} | {mean([r['map25'] for r in sel])} | "
                         f"{mean([r['recall50'] for r in sel])} | {mean([r['seed_coverage'] for r in sel])} | "
                         f"{mean([r['seed_coverage/<500'] for r in sel])} | "
                         f"{mean([r['seed_coverage/500-2k'] for r in sel])} | "
                         f"{mean([r['duplicate_rate'] for r in sel])} | "
                         f"{mean([r['predictions_per_scene'] for r in sel])} |")
    return "\n".join(lines) + "\n"


def plot_coverage_vs_recall(rows: Sequence[dict[str, Any]], path: Path) -> Optional[Path]:
    """Seed coverage against class-agnostic recall@0.5, one point per (checkpoint, setting)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pointformer.io.atomic import atomic_write_bytes

    points = [r for r in rows if r["seed_coverage"] is not None and r["recall50"] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    settings = list(dict.fromkeys(r["setting"] for r in points))
    for i, setting in enumerate(settings):
        sel = [r for r in points if r["setting"] == setting]
        ax.scatter([r["seed_coverage"] for r in sel], [r["recall50"] for r in sel], label=setting,
                   color=plt.cm.tab10(i % 10), marker="os^vD<>p"[i % 8])
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="recall = coverage")
    ax.set_xlabel("seed coverage (GT instances with a seed)")
    ax.set_ylabel("class-agnostic recall @ IoU 0.5")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Seed coverage (the cap on recall) vs recall, val rooms", fontsize=10)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("preset", "coverage", "cost", "checkpoints"))
    parser.add_argument("--raw-root", type=Path, default=None, help="preset: the generated raw release (scans/)")
    parser.add_argument("--data-root", type=Path, required=True, help="a preprocessed dataset (train/ and val/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables (JSON + markdown)")
    parser.add_argument("--experiment", default="convergence_scannet_scale", help="config preset for data/model")
    parser.add_argument("--splits", default="train,val", help="coverage: splits to measure")
    parser.add_argument("--queries", default=None, help=f"query counts (coverage default {DEFAULT_QUERIES}; "
                        "cost default 60,100,150,300)")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help="coverage: fps, size:<alpha>")
    parser.add_argument("--loss", default="influencer", help="cost: the loss of the timed step")
    parser.add_argument("--repeats", type=int, default=3, help="cost: repeats per query count (median)")
    parser.add_argument("--checkpoint", action="append", default=[], help="checkpoints: a trained seeded run's "
                        "checkpoint (repeatable)")
    parser.add_argument("--settings", default="", help="checkpoints: subset of "
                        + ",".join(s[0] for s in SETTINGS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    try:
        if args.part == "preset":
            if args.raw_root is None:
                parser.error("preset: pass --raw-root (the synthetic release that --data-root was preprocessed from)")
            run_preset_stats(args)
        elif args.part == "coverage":
            args.queries = args.queries or ",".join(map(str, DEFAULT_QUERIES))
            run_coverage(args)
        elif args.part == "cost":
            args.queries = args.queries or "60,100,150,300"
            run_cost(args)
        else:
            if not args.checkpoint:
                parser.error("checkpoints: pass --checkpoint PATH (repeatable)")
            run_checkpoints(args)
    except ValueError as exc:
        print(f"seeding: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
