"""``pointformer demo`` / ``make demo``: the whole pipeline on synthetic ScanNet-format rooms, on a CPU.

1. generate a synthetic ScanNet release (raw files: meshes, labels, segments, aggregations, splits)
2. preprocess it exactly as a real release (``pointformer preprocess scannet``)
3. train the tiny model with the Influencer Loss (experiment ``demo_cpu``)
4. evaluate the best checkpoint on the held-out validation rooms: mAP / mAP50 / mAP25 + per class
5. export a submission for the synthetic test split and validate it against the raw test meshes
6. ``pointformer show`` of a validation room: ground truth and prediction side by side in matching
   colours (one PNG, plus coloured PLYs of both)

Everything lands in one folder (default ``./demo_output``), named at the end. Re-running reuses
the generated and preprocessed data (both are deterministic and resumable) and retrains.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from pointformer.vis.show import ShowScene

_MARKER = ".pointformer-demo"


def _step(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.perf_counter()


def _done(start: float, timings: dict[str, float], name: str) -> None:
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"   ({timings[name]:.1f} s)", flush=True)


def _show_scene(val_set: Any, shown: Any, raw: Path) -> "ShowScene":
    """The ``show`` input of one validation room: its points (and mesh faces from the raw release), the
    predicted instances, and the GT instances of the model's classes."""
    from pointformer.inference import point_instances
    from pointformer.io.ply import PlyFormatError, read_ply
    from pointformer.vis.show import ShowScene
    from pointformer.vis.sources import ground_truth_from_gt_ids, restrict_classes

    scene = val_set.load(val_set.scene_ids.index(shown.scene_id))
    instances = point_instances(shown.prediction)
    names = dict(zip(val_set.thing_class_ids, (val_set.class_names[c] for c in val_set.thing_classes)))
    gt = restrict_classes(ground_truth_from_gt_ids(shown.gt_ids, shown.scene_id), set(val_set.thing_class_ids))
    try:  # the mesh makes a nicer picture; points are fine without it
        faces = read_ply(raw / "scans" / shown.scene_id / f"{shown.scene_id}_vh_clean_2.ply").faces
    except (PlyFormatError, OSError):
        faces = None
    return ShowScene(xyz=scene.xyz, rgb=scene.rgb, faces=faces, pred_ids=instances.instance.astype(np.int64) - 1,
                     pred_classes=instances.class_ids, pred_scores=instances.scores, class_names=names,
                     gt_ids=gt.ids, gt_classes=gt.classes, name=f"{shown.scene_id} (validation)")


def run_demo(out: Path, *, scenes: int = 24, test_scenes: int = 3, vertices: int = 8000, seed: int = 0,
             epochs: Optional[int] = None, workers: int = 2, overrides: Sequence[str] = (), progress: bool = True,
             render: bool = True) -> dict[str, Any]:
    """Run every demo step into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from pointformer.config import compose_config
    from pointformer.engine.run import run_training
    from pointformer.export import validate_submission, write_submission
    from pointformer.inference import Predictor
    from pointformer.io.atomic import atomic_write_json
    from pointformer.preprocess.scannet import preprocess_scannet
    from pointformer.synthetic.scannet import generate_scannet
    from pointformer.vis.show import colour_scene, render_show, write_show_plys

    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("folder written by `pointformer demo`; safe to delete\n")
    raw, pre, run_dir = out / "raw", out / "preprocessed", out / "train"
    timings: dict[str, float] = {}

    t = _step(f"1/6 generating {scenes} annotated + {test_scenes} test synthetic ScanNet rooms "
              f"(~{vertices} vertices each) -> {raw}")
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
    predictor = Predictor.from_checkpoint(best)
    val_split = predictor.settings.data.val_split
    val_set, results = predictor.predict_split(val_split, progress=progress)
    evaluation = predictor.evaluate(results)
    print(evaluation.table())
    print(f"validation ({len(results)} rooms): mAP {evaluation.map:.3f}  mAP50 {evaluation.map50:.3f}  "
          f"mAP25 {evaluation.map25:.3f}")
    evaluation.to_csv(out / "eval_val.csv")
    _done(t, timings, "evaluate")

    t = _step("5/6 exporting a submission for the synthetic test split and validating it")
    _, test_results = predictor.predict_split(predictor.settings.data.test_split, data_root=pre, progress=progress)
    zip_path = write_submission(out / "submission.zip", {s.scene_id: s.prediction for s in test_results})
    report = validate_submission(zip_path, raw / "scans_test")
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    print(report.summary())
    _done(t, timings, "export")

    t = _step("6/6 ground truth and prediction side by side (`pointformer show`): coloured PLYs and a PNG")
    shown = results[0]
    scene_id = shown.scene_id
    vis_dir = out / "visualisation"
    show_scene = _show_scene(val_set, shown, raw)
    png = vis_dir / f"{scene_id}_show.png"
    pred_ply, gt_ply = vis_dir / f"{scene_id}_pred.ply", vis_dir / f"{scene_id}_gt.ply"
    png_backend = None
    if render:
        shown_result = render_show(show_scene, png, pred_ply=pred_ply, gt_ply=gt_ply)
        png_backend, colours = shown_result.backend, shown_result.colours
        print(f"   {png} ({png_backend})")
    else:
        colours = colour_scene(show_scene)
        write_show_plys(show_scene, colours, pred_ply, gt_ply)
    print("   " + "\n   ".join(colours.titles))
    print(f"   {pred_ply}\n   {gt_ply}")
    _done(t, timings, "visualise")

    summary_out = {
        "output_folder": str(out.resolve()), "val_map": evaluation.map, "val_map50": evaluation.map50,
        "val_map25": evaluation.map25, "val_scenes": len(results),
        "train_steps": result.step, "best_checkpoint": str(best), "checkpoint_step": predictor.step,
        "submission": str(zip_path), "submission_valid": report.ok, "visualisation": str(vis_dir),
        "png": str(png) if render else None, "png_backend": png_backend, "seconds": timings,
    }
    atomic_write_json(out / "summary.json", summary_out)
    return summary_out
