"""``pointformer demo`` / ``make demo``: the whole pipeline on synthetic ScanNet-format rooms, on a CPU.

1. generate a synthetic ScanNet release (raw files: meshes, labels, segments, aggregations, splits)
2. preprocess it exactly as a real release (``pointformer preprocess scannet``)
3. train the tiny model with the Influencer Loss (experiment ``demo_cpu``)
4. evaluate the best checkpoint on the held-out validation rooms: mAP / mAP50 / mAP25 + per class
5. export a submission for the synthetic test split and validate it against the raw test meshes
6. write coloured PLYs of predicted and ground-truth instances of a validation room, and a PNG

Everything lands in one folder (default ``./demo_output``), named at the end. Re-running reuses
the generated and preprocessed data (both are deterministic and resumable) and retrains.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

_MARKER = ".pointformer-demo"


def _step(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.perf_counter()


def _done(start: float, timings: dict[str, float], name: str) -> None:
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"   ({timings[name]:.1f} s)", flush=True)


def run_demo(out: Path, *, scenes: int = 24, test_scenes: int = 3, vertices: int = 8000, seed: int = 0,
             epochs: Optional[int] = None, workers: int = 2, overrides: Sequence[str] = (), progress: bool = True,
             render: bool = True) -> dict[str, Any]:
    """Run every demo step into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from pointformer.engine.config import apply_overrides, compose_config
    from pointformer.engine.predict import load_trained, predict_split
    from pointformer.engine.run import run_training
    from pointformer.export import validate_submission, write_submission
    from pointformer.preprocess.scannet import preprocess_scannet
    from pointformer.synthetic.scannet import generate_scannet
    from pointformer.vis import color_instances, render_png, write_instance_ply

    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("folder written by `pointformer demo`; safe to delete\n")
    raw, pre, run_dir = out / "raw", out / "preprocessed", out / "train"
    timings: dict[str, float] = {}

    t = _step(f"1/6 generating {scenes} annotated + {test_scenes} test synthetic ScanNet rooms (~{vertices} vertices each) -> {raw}")
    generate_scannet(raw, num_scenes=scenes, num_test_scenes=test_scenes, seed=seed, target_vertices=vertices)
    _done(t, timings, "generate")

    t = _step(f"2/6 preprocessing -> {pre}")
    summary = preprocess_scannet(raw, pre, workers=workers, progress=progress)
    print(summary.format())
    if not summary.ok:
        raise RuntimeError(f"preprocessing failed for {len(summary.failed)} scene(s)")
    _done(t, timings, "preprocess")

    t = _step("3/6 training the tiny model with the Influencer Loss (experiment=demo_cpu)")
    if run_dir.exists():  # a previous demo's training: start over so metrics describe one run
        shutil.rmtree(run_dir)
    train_overrides = ["experiment=demo_cpu", f"data.root={pre}", f"run_dir={run_dir}", f"trainer.seed={seed}",
                       f"trainer.progress={str(progress).lower()}"]
    if epochs is not None:
        train_overrides.append(f"trainer.epochs={epochs}")
    cfg = compose_config([*train_overrides, *overrides])
    result = run_training(cfg, overrides=[*train_overrides, *overrides])
    _done(t, timings, "train")
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        best = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]

    t = _step(f"4/6 evaluating {best.name} on the held-out validation rooms")
    cfg, model, payload = load_trained(best)
    val_set, task, results = predict_split(cfg, model, str(cfg.data.val_split), progress=progress)
    evaluation = task.evaluate_result([g for _, g, _, _ in results], [p for _, _, p, _ in results], [s for s, _, _, _ in results])
    print(evaluation.table())
    print(f"validation ({len(results)} rooms): mAP {evaluation.map:.3f}  mAP50 {evaluation.map50:.3f}  mAP25 {evaluation.map25:.3f}")
    evaluation.to_csv(out / "eval_val.csv")
    _done(t, timings, "evaluate")

    t = _step("5/6 exporting a submission for the synthetic test split and validating it")
    test_cfg = apply_overrides(cfg, [f"data.root={pre}"])
    _, _, test_results = predict_split(test_cfg, model, str(cfg.data.test_split), progress=progress)
    zip_path = write_submission(out / "submission.zip", {s: p for s, _, p, _ in test_results})
    report = validate_submission(zip_path, raw / "scans_test")
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    print(report.summary())
    _done(t, timings, "export")

    t = _step("6/6 coloured PLY (and PNG) of predicted instances")
    scene_id, gt_ids, prediction, _ = results[0]
    scene = val_set.load(0)
    dense = prediction.dense_masks()
    order = np.argsort(-prediction.scores)
    instance = np.zeros(scene.num_points, dtype=np.int32)
    for rank, m in enumerate(order[::-1]):  # best-scoring last, so it wins overlaps
        instance[dense[m]] = len(order) - rank
    vis_dir = out / "visualisation"
    write_instance_ply(vis_dir / f"{scene_id}_pred.ply", scene.xyz, instance, base_rgb=scene.rgb)
    gt_instance = np.unique(np.where(np.isin(gt_ids // 1000, task.class_ids), gt_ids, 0), return_inverse=True)[1].reshape(-1)
    write_instance_ply(vis_dir / f"{scene_id}_gt.ply", scene.xyz, gt_instance.astype(np.int32), base_rgb=scene.rgb)
    pngs = {}
    if render:
        faces = None
        try:
            from pointformer.io.ply import read_ply

            faces = read_ply(raw / "scans" / scene_id / f"{scene_id}_vh_clean_2.ply").faces
        except (ValueError, OSError):
            faces = None  # points are fine for a picture
        for name, ids in (("pred", instance), ("gt", gt_instance)):
            pngs[name] = render_png(vis_dir / f"{scene_id}_{name}.png", scene.xyz, color_instances(ids, base_rgb=scene.rgb),
                                    faces=faces, width=960, height=720)
            print(f"   {vis_dir / f'{scene_id}_{name}.png'} ({pngs[name]})")
    print(f"   {vis_dir / f'{scene_id}_pred.ply'}\n   {vis_dir / f'{scene_id}_gt.ply'}")
    _done(t, timings, "visualise")

    summary_out = {
        "output_folder": str(out.resolve()), "val_map": evaluation.map, "val_map50": evaluation.map50,
        "val_map25": evaluation.map25, "val_scenes": len(results),
        "train_steps": result.step, "best_checkpoint": str(best), "checkpoint_step": int(payload["step"]),
        "submission": str(zip_path), "submission_valid": report.ok, "visualisation": str(vis_dir),
        "png_backend": pngs.get("pred"), "seconds": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary_out, indent=1))
    return summary_out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pointformer demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    parser.add_argument("--scenes", type=int, default=24, help="annotated rooms (a quarter become validation rooms)")
    parser.add_argument("--test-scenes", type=int, default=3, help="unannotated test rooms for the submission")
    parser.add_argument("--vertices", type=int, default=8000, help="mesh vertices per room")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: experiment demo_cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the tiny model's tensors are small, and on a busy machine "
                             "2 spin-waiting OpenMP threads made each step 10x slower)")
    parser.add_argument("--no-render", action="store_true", help="skip the PNG")
    parser.add_argument("overrides", nargs="*", help="extra training overrides, e.g. trainer.batch_size=4")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    from pointformer.engine.checkpoint import CheckpointError
    from pointformer.engine.config import ConfigError

    import torch

    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        summary = run_demo(Path(args.out), scenes=args.scenes, test_scenes=args.test_scenes, vertices=args.vertices,
                           seed=args.seed, epochs=args.epochs, workers=args.workers, overrides=args.overrides,
                           render=not args.no_render)
    except (ConfigError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"pointformer demo: error: {exc}", file=sys.stderr)
        return 1
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Validation mAP {summary['val_map']:.3f} / "
          f"mAP50 {summary['val_map50']:.3f} / mAP25 {summary['val_map25']:.3f}; submission "
          f"{'valid' if summary['submission_valid'] else 'INVALID'}.")
    print(f"Everything is in {summary['output_folder']}")
    return 0 if summary["submission_valid"] else 1
